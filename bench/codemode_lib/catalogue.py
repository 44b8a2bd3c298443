"""A deterministic catalogue of config-declared tools for the code-mode token benchmark.

50 fake SaaS services x 4 resources x 5 operations = 1,000 `command` tools (each runs `/bin/echo ok`; none is
ever called), with the names, descriptions, titles, annotations and JSON Schemas a real MCP catalogue has:
typed parameters with descriptions, enums, formats, nested objects, required lists. Same input, same file.
"""

from __future__ import annotations

import random
from typing import Any

JsonObject = dict[str, Any]

# (service id, display name, its four resources). Resource names are singular snake_case.
SERVICES: list[tuple[str, str, list[str]]] = [
    ("github", "GitHub", ["issue", "pull_request", "repository", "release"]),
    ("gitlab", "GitLab", ["merge_request", "pipeline", "project", "issue"]),
    ("jira", "Jira", ["issue", "sprint", "project", "comment"]),
    ("linear", "Linear", ["issue", "cycle", "team", "label"]),
    ("slack", "Slack", ["message", "channel", "user", "reminder"]),
    ("discord", "Discord", ["message", "channel", "role", "thread"]),
    ("teams", "Microsoft Teams", ["message", "channel", "team", "meeting"]),
    ("zoom", "Zoom", ["meeting", "recording", "webinar", "participant"]),
    ("gmail", "Gmail", ["message", "draft", "label", "thread"]),
    ("gcal", "Google Calendar", ["event", "calendar", "attendee", "reminder"]),
    ("gdrive", "Google Drive", ["file", "folder", "permission", "comment"]),
    ("notion", "Notion", ["page", "database", "block", "comment"]),
    ("confluence", "Confluence", ["page", "space", "attachment", "comment"]),
    ("salesforce", "Salesforce", ["account", "contact", "opportunity", "lead"]),
    ("hubspot", "HubSpot", ["contact", "company", "deal", "ticket"]),
    ("zendesk", "Zendesk", ["ticket", "user", "organization", "macro"]),
    ("intercom", "Intercom", ["conversation", "contact", "article", "tag"]),
    ("stripe", "Stripe", ["customer", "invoice", "payment_intent", "subscription"]),
    ("shopify", "Shopify", ["product", "order", "customer", "inventory_item"]),
    ("quickbooks", "QuickBooks", ["invoice", "bill", "vendor", "account"]),
    ("xero", "Xero", ["invoice", "contact", "bank_transaction", "payment"]),
    ("workday", "Workday", ["worker", "time_off_request", "position", "expense_report"]),
    ("greenhouse", "Greenhouse", ["candidate", "application", "job", "interview"]),
    ("aws_s3", "Amazon S3", ["bucket", "object", "lifecycle_rule", "access_point"]),
    ("aws_ec2", "Amazon EC2", ["instance", "volume", "security_group", "snapshot"]),
    ("gcp_compute", "Google Compute Engine", ["instance", "disk", "firewall", "image"]),
    ("kubernetes", "Kubernetes", ["deployment", "pod", "service", "config_map"]),
    ("docker_hub", "Docker Hub", ["repository", "tag", "webhook", "team"]),
    ("datadog", "Datadog", ["monitor", "dashboard", "incident", "slo"]),
    ("pagerduty", "PagerDuty", ["incident", "schedule", "service", "escalation_policy"]),
    ("sentry", "Sentry", ["issue", "project", "release", "alert_rule"]),
    ("grafana", "Grafana", ["dashboard", "alert", "datasource", "folder"]),
    ("cloudflare", "Cloudflare", ["dns_record", "zone", "firewall_rule", "worker"]),
    ("vercel", "Vercel", ["deployment", "project", "domain", "env_var"]),
    ("twilio", "Twilio", ["message", "call", "phone_number", "verification"]),
    ("sendgrid", "SendGrid", ["email", "template", "contact_list", "suppression"]),
    ("mailchimp", "Mailchimp", ["campaign", "audience", "member", "template"]),
    ("figma", "Figma", ["file", "comment", "component", "project"]),
    ("asana", "Asana", ["task", "project", "section", "tag"]),
    ("trello", "Trello", ["card", "board", "list", "checklist"]),
    ("airtable", "Airtable", ["record", "table", "base", "view"]),
    ("snowflake", "Snowflake", ["warehouse", "query", "table", "role"]),
    ("bigquery", "BigQuery", ["dataset", "table", "job", "routine"]),
    ("okta", "Okta", ["user", "group", "application", "policy"]),
    ("auth0", "Auth0", ["user", "role", "connection", "client"]),
    ("docusign", "DocuSign", ["envelope", "template", "recipient", "document"]),
    ("dropbox", "Dropbox", ["file", "folder", "shared_link", "team_member"]),
    ("calendly", "Calendly", ["event_type", "scheduled_event", "invitee", "webhook"]),
    ("youtube", "YouTube", ["video", "playlist", "comment", "channel"]),
    ("spotify", "Spotify", ["playlist", "track", "album", "artist"]),
]

# Field name -> JSON Schema (with a description). Resources draw their writable fields from this pool.
FIELDS: dict[str, JsonObject] = {
    "name": {"type": "string", "maxLength": 200, "description": "Display name, 1-200 characters."},
    "title": {"type": "string", "maxLength": 256, "description": "Short title shown in lists and notifications."},
    "description": {"type": "string", "description": "Free-form description; Markdown is allowed."},
    "body": {"type": "string", "description": "Main text content. Markdown is rendered; mentions use @handle."},
    "email": {"type": "string", "format": "email", "description": "Primary e-mail address."},
    "phone": {"type": "string", "description": "Phone number in E.164 format, e.g. +14155550100."},
    "status": {"type": "string", "enum": ["draft", "active", "paused", "archived"],
               "description": "Lifecycle state. Archived objects are read-only."},
    "priority": {"type": "string", "enum": ["low", "normal", "high", "urgent"],
                 "description": "Priority; urgent ones notify the on-call owner."},
    "amount": {"type": "integer", "minimum": 0,
               "description": "Amount in the currency's smallest unit (cents for USD)."},
    "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 currency code, e.g. USD."},
    "due_date": {"type": "string", "format": "date",
                 "description": "Due date (YYYY-MM-DD), in the account's time zone."},
    "start_time": {"type": "string", "format": "date-time", "description": "Start, RFC 3339 with offset."},
    "end_time": {"type": "string", "format": "date-time", "description": "End, RFC 3339; must be after start_time."},
    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 50,
             "description": "Labels; unknown labels are created."},
    "owner_id": {"type": "string", "description": "ID of the user who owns it; defaults to the caller."},
    "parent_id": {"type": "string", "description": "ID of the parent object it belongs to."},
    "assignee_ids": {"type": "array", "items": {"type": "string"}, "description": "IDs of the users assigned."},
    "url": {"type": "string", "format": "uri", "description": "Absolute URL (https)."},
    "quantity": {"type": "integer", "minimum": 1, "description": "Number of units."},
    "visibility": {"type": "string", "enum": ["private", "internal", "public"],
                   "description": "Who can see it. Default: private."},
    "is_active": {"type": "boolean", "description": "Whether it is in use; inactive ones are hidden from lists."},
    "metadata": {"type": "object", "additionalProperties": {"type": "string"},
                 "description": "Up to 20 key/value pairs of your own, returned as given."},
    "address": {
        "type": "object",
        "description": "Postal address.",
        "properties": {
            "line1": {"type": "string", "description": "Street and number."},
            "city": {"type": "string"},
            "postal_code": {"type": "string"},
            "country": {"type": "string", "pattern": "^[A-Z]{2}$", "description": "ISO 3166-1 alpha-2 code."},
        },
        "required": ["line1", "country"],
    },
    "timezone": {"type": "string", "description": "IANA time zone name, e.g. Europe/Berlin."},
    "region": {"type": "string", "enum": ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1"],
               "description": "Region where it is created; cannot be changed later."},
    "size": {"type": "string", "enum": ["small", "medium", "large", "xlarge"], "description": "Capacity tier."},
    "notify": {"type": "boolean", "description": "Send notifications to watchers. Default: true."},
}

# Extra operations: (verb, description template, extra parameters). {S} service ({aS} with its article),
# {r} resource, {rs} plural.
EXTRA_OPS: list[tuple[str, str, JsonObject]] = [
    ("delete", "Delete {aS} {r} permanently. This cannot be undone; consider archiving instead.",
     {"confirm": {"type": "boolean", "const": True, "description": "Must be true: deletion is permanent."}}),
    ("archive", "Archive {aS} {r}: it becomes read-only and disappears from default lists, and can be restored.",
     {"reason": {"type": "string", "description": "Why it is archived; shown in the audit trail."}}),
    ("search", "Full-text search over {S} {rs}: matches names, descriptions and comments. Ranked by relevance.",
     {"query": {"type": "string", "description": "Search terms; quote phrases, prefix a term with - to exclude it."},
      "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20, "description": "Most results."}}),
    ("export", "Export {S} {rs} as a file (CSV or JSON) and return a download URL valid for one hour.",
     {"format": {"type": "string", "enum": ["csv", "json"], "description": "File format."},
      "since": {"type": "string", "format": "date-time", "description": "Only objects changed after this."}}),
    ("assign", "Assign {aS} {r} to users, replacing or adding to its current assignees.",
     {"assignee_ids": FIELDS["assignee_ids"],
      "mode": {"type": "string", "enum": ["replace", "add"], "description": "Replace the assignees or add to them."}}),
    ("comment", "Add a comment to {aS} {r}. Mentioned users are notified.",
     {"body": FIELDS["body"], "internal": {"type": "boolean", "description": "Visible to your team only."}}),
]


def _human(resource: str) -> str:
    return resource.replace("_", " ")


def _a(word: str) -> str:
    return ("an " if word[0].lower() in "aeio" else "a ") + word  # "a user"


def _plural(resource: str) -> str:
    if resource.endswith("y") and not resource.endswith(("ay", "ey", "oy")):
        return resource[:-1] + "ies"
    if resource.endswith(("s", "x", "ch", "sh")):
        return resource + "es"
    return resource + "s"


def _obj(properties: JsonObject, required: list[str]) -> JsonObject:
    schema: JsonObject = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    return schema


def _tool(title: str, description: str, schema: JsonObject, read_only: bool, destructive: bool) -> JsonObject:
    return {
        "title": title,
        "description": description,
        "input_schema": schema,
        "annotations": {"readOnlyHint": read_only, "destructiveHint": destructive, "openWorldHint": True},
        "call": {"program": "/bin/echo", "args": ["ok"], "timeout": "5s"},
    }


def service_tools(rng: random.Random, service: str, display: str, resources: list[str]) -> dict[str, JsonObject]:
    """The 20 tools of one service: per resource list / get / create / update and one extra operation."""
    tools: dict[str, JsonObject] = {}
    field_names = sorted(FIELDS)
    for resource in resources:
        r, rs = _human(resource), _human(_plural(resource))
        id_param = f"{resource}_id"
        id_schema = {"type": "string", "description": f"The {display} {r} ID, as returned by list or create."}
        fields = rng.sample(field_names, rng.randint(3, 7))
        writable = {f: FIELDS[f] for f in fields}
        preferred: tuple[str, ...] = ("name", "title", "email", "body", "amount")
        required = [f for f in preferred if f in fields][:1]
        status = rng.choice([["open", "closed", "all"], ["active", "archived", "all"], ["pending", "done", "failed"]])
        sortable = [f for f in ["created_at", "updated_at", "name", "due_date", "priority"] if rng.random() < 0.6]
        list_props: JsonObject = {
            "status": {"type": "string", "enum": status, "default": status[0], "description": "Only these."},
            "owner_id": {"type": "string", "description": "Only those owned by this user ID."},
            "updated_since": {"type": "string", "format": "date-time",
                              "description": "Only those changed after this time (RFC 3339)."},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 25,
                      "description": "Page size."},
            "cursor": {"type": "string", "description": "`next_cursor` from the previous page."},
        }
        if sortable:
            list_props["sort"] = {"type": "string", "enum": sortable + ["-" + s for s in sortable],
                                  "description": "Sort key; a leading - sorts descending."}
        includes = rng.sample(["owner", "comments", "attachments", "history", "related", "stats"], 3)
        tools[f"{service}__list_{_plural(resource)}"] = _tool(
            f"List {rs}",
            f"List {rs} in {display}, most recently updated first. Filter by status, owner and update time; "
            f"paginate with `cursor`. Returns at most `limit` items and `next_cursor` when there are more.",
            _obj(list_props, []), True, False)
        tools[f"{service}__get_{resource}"] = _tool(
            f"Get {r}",
            f"Get one {display} {r} by ID with all of its fields. `include` embeds related objects in the "
            f"same answer instead of separate calls.",
            _obj({id_param: id_schema,
                  "include": {"type": "array", "items": {"type": "string", "enum": includes},
                              "description": "Related objects to embed."}}, [id_param]),
            True, False)
        tools[f"{service}__create_{resource}"] = _tool(
            f"Create {r}",
            f"Create {_a(r)} in {display}. Returns the new {r}, with its generated `id` and URL. "
            f"Fails with a conflict if one with the same name exists in the same parent.",
            _obj(dict(writable), required), False, False)
        tools[f"{service}__update_{resource}"] = _tool(
            f"Update {r}",
            f"Change fields of {_a(display)} {r}. Only the fields given change; null clears an optional field. "
            f"Returns the {r} as it is after the change.",
            _obj({id_param: id_schema, **writable}, [id_param]), False, False)
        verb, template, extra = rng.choice(EXTRA_OPS)
        target = _plural(resource) if verb in ("search", "export") else resource
        props = dict(extra) if verb in ("search", "export") else {id_param: id_schema, **extra}
        req = [k for k in props if k in (id_param, "query", "confirm", "body", "assignee_ids")]
        tools[f"{service}__{verb}_{target}"] = _tool(
            f"{verb.capitalize()} {rs if target != resource else r}",
            template.format(S=display, aS=_a(display), r=r, rs=rs),
            _obj(props, req), verb in ("search", "export"), verb == "delete")
    return tools


def catalogue(seed: int = 1) -> dict[str, JsonObject]:
    """backend name -> `kind: command` backend with its 20 tools; 1,000 tools in all."""
    rng = random.Random(seed)
    backends: dict[str, JsonObject] = {}
    for service, display, resources in SERVICES:
        tools = service_tools(rng, service, display, resources)
        assert len(tools) == 20, (service, sorted(tools))
        backends[service] = {"kind": "command", "tools": tools}
    assert len(backends) == 50
    return backends


def config(seed: int = 1) -> JsonObject:
    """A complete mcpgate config (JSON) serving the catalogue."""
    return {"server": {"listen": "127.0.0.1:8000", "name": "mcpgate-bench-catalogue"}, "backends": catalogue(seed)}
