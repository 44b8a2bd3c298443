#!/usr/bin/env node
// A Streamable HTTP MCP server built on the official TypeScript SDK (pinned in package.json), serving the surface
// the conformance suite's server scenarios expect (0.1.16: tools, resources, prompts, completion, logging), for
// mcpgate to federate in tests. Its tools ask the client for sampling and elicitation through the SDK's
// `extra.sendRequest`, which puts the request on the tool call's own response stream.
//
// Two eras on one endpoint, as the servers that made mcpgate's relay defect visible do:
//   - legacy (2025-11-25 and older): `initialize`, then a session served by the SDK's
//     StreamableHTTPServerTransport;
//   - 2026-07-28 (stateless): the SDK (1.29) has no stateless server, so a thin layer here answers
//     `server/discover` and serves every other request through a fresh SDK Server reached over an in-memory
//     client. What that client is sent — log and progress notifications, and the server's own requests
//     (sampling, elicitation, roots) — goes on the POST's event stream as it comes, in order; the answer to a
//     request arrives as a later POST of a JSON-RPC response, and goes back to the waiting tool.
//
// Usage: node server.mjs [PORT]      (PORT, else $PORT, else 0: any free port)
//   MCP_TS_ERAS=legacy  serve the legacy era only (`server/discover` is then refused like any unknown method)
// Prints "listening on http://127.0.0.1:PORT/mcp" on stdout once it accepts connections.

import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema,
  CompleteRequestSchema,
  CreateMessageRequestSchema,
  CreateMessageResultSchema,
  ElicitRequestSchema,
  ElicitResultSchema,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListResourcesRequestSchema,
  ListRootsRequestSchema,
  ListToolsRequestSchema,
  LoggingMessageNotificationSchema,
  McpError,
  ProgressNotificationSchema,
  ReadResourceRequestSchema,
  ResultSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';

const STATELESS = '2026-07-28';
const ERAS = process.env.MCP_TS_ERAS === 'legacy' ? 'legacy' : 'both';
const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
const WAV = 'UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=';

// ------------------------------------------------------------------------------------------------ surface ---

const noArguments = { type: 'object', properties: {} };
const oneString = (name, description) => ({
  type: 'object',
  properties: { [name]: { type: 'string', description } },
  required: [name],
});
const text = (value) => ({ content: [{ type: 'text', text: value }] });
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Ask the client through the SDK, on this call's own stream; a refusal becomes text, as conformance expects. */
async function ask(extra, what, request, schema, render) {
  try {
    return text(render(await extra.sendRequest(request, schema)));
  } catch (error) {
    return text(`${what} not supported or error: ${error.message}`);
  }
}

const elicited = (prefix) => (r) =>
  `${prefix}: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`;

const sep1034Schema = {
  type: 'object',
  properties: {
    name: { type: 'string', description: 'User name', default: 'John Doe' },
    age: { type: 'integer', description: 'User age', default: 30 },
    score: { type: 'number', description: 'User score', default: 95.5 },
    status: {
      type: 'string',
      description: 'User status',
      enum: ['active', 'inactive', 'pending'],
      default: 'active',
    },
    verified: { type: 'boolean', description: 'Verification status', default: true },
  },
  required: [],
};

const choices = (kind, titles) =>
  titles.map((title, i) => ({ const: `value${i + 1}`, title: `${title} ${kind}` }));
const sep1330Schema = {
  type: 'object',
  properties: {
    untitledSingle: {
      type: 'string',
      description: 'Select one option',
      enum: ['option1', 'option2', 'option3'],
    },
    titledSingle: {
      type: 'string',
      description: 'Select one option with titles',
      oneOf: choices('Option', ['First', 'Second', 'Third']),
    },
    legacyEnum: {
      type: 'string',
      description: 'Select one option (legacy)',
      enum: ['opt1', 'opt2', 'opt3'],
      enumNames: ['Option One', 'Option Two', 'Option Three'],
    },
    untitledMulti: {
      type: 'array',
      description: 'Select multiple options',
      minItems: 1,
      maxItems: 3,
      items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
    },
    titledMulti: {
      type: 'array',
      description: 'Select multiple options with titles',
      minItems: 1,
      maxItems: 3,
      items: { anyOf: choices('Choice', ['First', 'Second', 'Third']) },
    },
  },
  required: [],
};

/** Every tool: [name, description, input schema, run(arguments, extra)]. */
const TOOLS = [
  ['test_simple_text', 'Tests simple text content response', noArguments, () =>
    text('This is a simple text response for testing.')],
  ['test_image_content', 'Tests image content response', noArguments, () => ({
    content: [{ type: 'image', data: PNG, mimeType: 'image/png' }],
  })],
  ['test_audio_content', 'Tests audio content response', noArguments, () => ({
    content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }],
  })],
  ['test_embedded_resource', 'Tests embedded resource content response', noArguments, () => ({
    content: [{
      type: 'resource',
      resource: {
        uri: 'test://embedded-resource',
        mimeType: 'text/plain',
        text: 'This is an embedded resource content.',
      },
    }],
  })],
  ['test_multiple_content_types', 'Tests response with multiple content types (text, image, resource)',
    noArguments, () => ({
      content: [
        { type: 'text', text: 'Multiple content types test:' },
        { type: 'image', data: PNG, mimeType: 'image/png' },
        {
          type: 'resource',
          resource: {
            uri: 'test://mixed-content-resource',
            mimeType: 'application/json',
            text: JSON.stringify({ test: 'data', value: 123 }),
          },
        },
      ],
    })],
  ['test_tool_with_logging', 'Tests tool that emits log messages during execution', noArguments,
    async (_args, extra) => {
      const steps = ['Tool execution started', 'Tool processing data', 'Tool execution completed'];
      for (const [i, data] of steps.entries()) {
        if (i > 0) await pause(Number(process.env.MCP_TS_LOG_PAUSE_MS ?? 50));
        await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data } });
      }
      return text('Tool with logging executed successfully');
    }],
  ['test_tool_with_progress', 'Tests tool that reports progress notifications', noArguments,
    async (_args, extra) => {
      const progressToken = extra._meta?.progressToken ?? 0;
      for (const [i, progress] of [0, 50, 100].entries()) {
        if (i > 0) await pause(50);
        await extra.sendNotification({
          method: 'notifications/progress',
          params: { progressToken, progress, total: 100, message: `Completed step ${progress} of 100` },
        });
      }
      return text(String(progressToken));
    }],
  ['test_error_handling', 'Tests error response handling', noArguments, () => ({
    ...text('This tool intentionally returns an error for testing'),
    isError: true,
  })],
  ['test_reconnection', 'Tests SSE stream disconnection and client reconnection (SEP-1699).', noArguments,
    () => text('Reconnection test completed successfully. If you received this, the client properly '
      + 'reconnected after stream closure.')],
  ['test_sampling', 'Tests server-initiated sampling (LLM completion request)',
    oneString('prompt', 'The prompt to send to the LLM'), (args, extra) => ask(extra, 'Sampling', {
      method: 'sampling/createMessage',
      params: { messages: [{ role: 'user', content: { type: 'text', text: args.prompt } }], maxTokens: 100 },
    }, CreateMessageResultSchema, (r) => `LLM response: ${r.content?.text ?? 'No response'}`)],
  ['test_elicitation', 'Tests server-initiated elicitation (user input request)',
    oneString('message', 'The message to show the user'), (args, extra) => ask(extra, 'Elicitation', {
      method: 'elicitation/create',
      params: {
        mode: 'form',
        message: args.message,
        requestedSchema: {
          type: 'object',
          properties: { response: { type: 'string', description: "User's response" } },
          required: ['response'],
        },
      },
    }, ElicitResultSchema, elicited('User response'))],
  ['test_elicitation_sep1034_defaults', 'Tests elicitation with default values per SEP-1034', noArguments,
    (_args, extra) => ask(extra, 'Elicitation', {
      method: 'elicitation/create',
      params: {
        mode: 'form',
        message: 'Please review and update the form fields with defaults',
        requestedSchema: sep1034Schema,
      },
    }, ElicitResultSchema, elicited('Elicitation completed'))],
  ['test_elicitation_sep1330_enums', 'Tests elicitation with enum schema improvements per SEP-1330',
    noArguments, (_args, extra) => ask(extra, 'Elicitation', {
      method: 'elicitation/create',
      params: {
        mode: 'form',
        message: 'Please select options from the enum fields',
        requestedSchema: sep1330Schema,
      },
    }, ElicitResultSchema, elicited('Elicitation completed'))],
  ['test_list_roots', "Asks the client for its roots and lists their URIs", noArguments,
    (_args, extra) => ask(extra, 'Roots', { method: 'roots/list' }, ResultSchema,
      (r) => `Roots: ${(r.roots ?? []).map((root) => root.uri).join(', ')}`)],
];

const RESOURCES = [
  ['test://static-text', 'static-text', 'Static Text Resource', 'A static text resource for testing',
    'text/plain', { text: 'This is the content of the static text resource.' }],
  ['test://static-binary', 'static-binary', 'Static Binary Resource',
    'A static binary resource (image) for testing', 'image/png', { blob: PNG }],
  ['test://watched-resource', 'watched-resource', 'Watched Resource', 'A resource clients may subscribe to',
    'text/plain', { text: 'Watched resource content' }],
];
const TEMPLATE = /^test:\/\/template\/([^/?#]+)\/data$/;

const user = (content) => ({ role: 'user', content });
const PROMPTS = [
  ['test_simple_prompt', 'Simple Test Prompt', 'A simple prompt without arguments', [], () => [
    user({ type: 'text', text: 'This is a simple prompt for testing.' })]],
  ['test_prompt_with_arguments', 'Prompt With Arguments', 'A prompt with required arguments',
    [['arg1', 'First test argument'], ['arg2', 'Second test argument']], (a) => [
      user({ type: 'text', text: `Prompt with arguments: arg1='${a.arg1}', arg2='${a.arg2}'` })]],
  ['test_prompt_with_embedded_resource', 'Prompt With Embedded Resource',
    'A prompt that includes an embedded resource', [['resourceUri', 'URI of the resource to embed']], (a) => [
      user({
        type: 'resource',
        resource: { uri: a.resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' },
      }),
      user({ type: 'text', text: 'Please process the embedded resource above.' })]],
  ['test_prompt_with_image', 'Prompt With Image', 'A prompt that includes image content', [], () => [
    user({ type: 'image', data: PNG, mimeType: 'image/png' }),
    user({ type: 'text', text: 'Please analyze the image above.' })]],
];

/** A fresh SDK server with the whole surface. */
function mcpServer() {
  const server = new Server(
    { name: 'mcpgate-upstream-ts', version: '1.0.0' },
    {
      capabilities: {
        tools: {},
        resources: { subscribe: true },
        prompts: {},
        logging: {},
        completions: {},
      },
    },
  );
  server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: TOOLS.map(([name, description, inputSchema]) => ({ name, description, inputSchema })),
  }));
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const tool = TOOLS.find(([name]) => name === request.params.name);
    if (!tool) throw new McpError(-32602, `Unknown tool: ${request.params.name}`);
    return tool[3](request.params.arguments ?? {}, extra);
  });
  server.setRequestHandler(ListResourcesRequestSchema, () => ({
    resources: RESOURCES.map(([uri, name, title, description, mimeType]) =>
      ({ uri, name, title, description, mimeType })),
  }));
  server.setRequestHandler(ListResourceTemplatesRequestSchema, () => ({
    resourceTemplates: [{
      uriTemplate: 'test://template/{id}/data',
      name: 'template',
      title: 'Resource Template',
      description: 'A resource template with parameter substitution',
      mimeType: 'application/json',
    }],
  }));
  server.setRequestHandler(ReadResourceRequestSchema, (request) => {
    const uri = request.params.uri;
    const found = RESOURCES.find(([known]) => known === uri);
    if (found) return { contents: [{ uri, mimeType: found[4], ...found[5] }] };
    const id = TEMPLATE.exec(uri)?.[1];
    if (id === undefined) throw new McpError(-32002, `Resource not found: ${uri}`, { uri });
    const data = JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` });
    return { contents: [{ uri, mimeType: 'application/json', text: data }] };
  });
  server.setRequestHandler(SubscribeRequestSchema, () => ({}));
  server.setRequestHandler(UnsubscribeRequestSchema, () => ({}));
  server.setRequestHandler(ListPromptsRequestSchema, () => ({
    prompts: PROMPTS.map(([name, title, description, args]) => ({
      name,
      title,
      description,
      arguments: args.map(([argument, about]) => ({ name: argument, description: about, required: true })),
    })),
  }));
  server.setRequestHandler(GetPromptRequestSchema, (request) => {
    const prompt = PROMPTS.find(([name]) => name === request.params.name);
    if (!prompt) throw new McpError(-32602, `Unknown prompt: ${request.params.name}`);
    const args = request.params.arguments ?? {};
    for (const [argument] of prompt[3]) {
      if (typeof args[argument] !== 'string') throw new McpError(-32602, `Missing argument ${argument}`);
    }
    return { description: prompt[2], messages: prompt[4](args) };
  });
  server.setRequestHandler(CompleteRequestSchema, () => ({ completion: { values: [], total: 0, hasMore: false } }));
  server.setRequestHandler(SetLevelRequestSchema, () => ({}));
  return server;
}

// ------------------------------------------------------------------------------------------------- legacy ---

/** Live legacy sessions by id. */
const sessions = new Map();

async function serveLegacy(req, res, body) {
  const id = req.headers['mcp-session-id'];
  let transport = id ? sessions.get(id) : undefined;
  if (!transport) {
    if (id || req.method !== 'POST' || body?.method !== 'initialize') {
      return json(res, 404, { jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } });
    }
    transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (sid) => sessions.set(sid, transport),
    });
    transport.onclose = () => transport.sessionId && sessions.delete(transport.sessionId);
    await mcpServer().connect(transport);
  }
  await transport.handleRequest(req, res, body);
}

// -------------------------------------------------------------------------------------------- 2026-07-28 ---

/** Server-to-client requests sent on a 2026-07-28 stream, waiting for the client's POSTed answer, by id. */
const asked = new Map();
let nextAsk = 0;

const LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];
const CACHEABLE = new Set(['tools/list', 'prompts/list', 'resources/list', 'resources/templates/list',
  'resources/read']);

/** A 2026-07-28 result: every one says it is complete; lists and reads carry caching hints. */
function stamped(method, result) {
  const out = { resultType: 'complete', ...result };
  if (CACHEABLE.has(method)) Object.assign(out, { ttlMs: 0, cacheScope: 'private' });
  return out;
}

async function serveStateless(req, res, body) {
  if (req.method !== 'POST') return json(res, 405, { jsonrpc: '2.0', id: null, error: { code: -32600, message: 'POST only' } });
  // A client's answer to one of our requests.
  if (body && body.method === undefined && body.id !== undefined) {
    const waiting = asked.get(body.id);
    if (!waiting) return json(res, 404, { jsonrpc: '2.0', id: null, error: { code: -32600, message: 'Unknown id' } });
    asked.delete(body.id);
    waiting(body);
    res.writeHead(202).end();
    return;
  }
  const { id, method } = body ?? {};
  const params = body?.params ?? {};
  const meta = params._meta ?? {};
  const version = meta['io.modelcontextprotocol/protocolVersion'];
  if (id === undefined) return res.writeHead(202).end(); // a notification: nothing to do
  if (version !== STATELESS || req.headers['mcp-protocol-version'] !== STATELESS) {
    return json(res, 400, { jsonrpc: '2.0', id, error: { code: -32022, message: 'Unsupported protocol version',
      data: { supported: [STATELESS], requested: String(version) } } });
  }
  if (method === 'server/discover') {
    return json(res, 200, { jsonrpc: '2.0', id, result: {
      resultType: 'complete',
      supportedVersions: [STATELESS],
      capabilities: { tools: {}, resources: {}, prompts: {}, logging: {}, completions: {} },
      ttlMs: 0,
      cacheScope: 'private',
      _meta: { 'io.modelcontextprotocol/serverInfo': { name: 'mcpgate-upstream-ts', version: '1.0.0' } },
    } });
  }
  const known = ['tools/list', 'tools/call', 'resources/list', 'resources/templates/list', 'resources/read',
    'prompts/list', 'prompts/get', 'completion/complete'];
  if (!known.includes(method)) {
    return json(res, 404, { jsonrpc: '2.0', id, error: { code: -32601, message: 'Method not found' } });
  }

  // The request runs in a fresh SDK server, reached by an in-memory client that declares what the caller's
  // client declared; what the server sends that client is written on this response's event stream.
  const capabilities = meta['io.modelcontextprotocol/clientCapabilities'] ?? {};
  const minLevel = LEVELS.indexOf(meta['io.modelcontextprotocol/logLevel']);
  const client = new Client({ name: 'stateless-front', version: '1.0.0' }, { capabilities });
  let streaming = false;
  const write = (message) => {
    if (!streaming) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      streaming = true;
    }
    res.write(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
  };
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    // 2026-07-28: log messages only when the request asked for a level, and none below it.
    if (minLevel >= 0 && LEVELS.indexOf(n.params.level) >= minLevel) write({ jsonrpc: '2.0', ...n });
  });
  client.setNotificationHandler(ProgressNotificationSchema, (n) => write({ jsonrpc: '2.0', ...n }));
  const relay = (schema, name) => {
    if (!capabilities[name]) return;
    client.setRequestHandler(schema, (request) => new Promise((resolve, reject) => {
      const askId = `ask-${++nextAsk}`;
      asked.set(askId, (answer) => (answer.error
        ? reject(new McpError(answer.error.code, answer.error.message, answer.error.data))
        : resolve(answer.result)));
      res.on('close', () => asked.delete(askId));
      write({ jsonrpc: '2.0', id: askId, method: request.method, params: request.params });
    }));
  };
  relay(CreateMessageRequestSchema, 'sampling');
  relay(ElicitRequestSchema, 'elicitation');
  relay(ListRootsRequestSchema, 'roots');

  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  const server = mcpServer();
  try {
    await server.connect(serverSide);
    await client.connect(clientSide);
    const result = await client.request({ method, params }, ResultSchema, { timeout: 120_000 });
    const answer = { jsonrpc: '2.0', id, result: stamped(method, result) };
    if (streaming) {
      write(answer);
      res.end();
    } else {
      json(res, 200, answer);
    }
  } catch (error) {
    const answer = { jsonrpc: '2.0', id, error: { code: error.code ?? -32603, message: error.message, data: error.data } };
    if (streaming) {
      write(answer);
      res.end();
    } else {
      json(res, 200, answer);
    }
  } finally {
    await client.close();
    await server.close();
  }
}

// ------------------------------------------------------------------------------------------------- server ---

function json(res, status, message) {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(message));
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const raw = Buffer.concat(chunks).toString('utf8');
  return raw ? JSON.parse(raw) : undefined;
}

const http = createServer(async (req, res) => {
  try {
    if (new URL(req.url, 'http://x').pathname !== '/mcp') return json(res, 404, { error: 'not found' });
    const body = req.method === 'POST' ? await readBody(req) : undefined;
    const stateless = ERAS === 'both' && !req.headers['mcp-session-id']
      && req.headers['mcp-protocol-version'] === STATELESS;
    await (stateless ? serveStateless(req, res, body) : serveLegacy(req, res, body));
  } catch (error) {
    console.error('request failed:', error);
    if (!res.headersSent) json(res, 500, { jsonrpc: '2.0', id: null, error: { code: -32603, message: String(error) } });
  }
});

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
http.listen(port, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${http.address().port}/mcp (eras: ${ERAS})`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
