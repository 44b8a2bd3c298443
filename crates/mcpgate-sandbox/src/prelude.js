// Evaluated once in every fresh runtime, before the program. It takes the two host functions off the global
// object (the program cannot call them itself), builds `tools` and `console` from them, and returns what the
// engine needs to drive the program: `run(code)` and `settle(id, ok, json)`.
//
// `bindings` (JSON): [[namespace, identifier, tool], ...]; `input` (JSON): the script tool's arguments, or null.
(function (bindings, input) {
  "use strict";
  const hostCall = globalThis.__mcpgate_call;
  const hostLog = globalThis.__mcpgate_log;
  delete globalThis.__mcpgate_call;
  delete globalThis.__mcpgate_log;
  const pending = new Map();
  const stringify = JSON.stringify;
  const parse = JSON.parse;

  function invoke(tool, args) {
    return new Promise(function (resolve, reject) {
      const json = stringify(args === undefined ? {} : args);
      if (typeof json !== "string") {
        throw new TypeError(tool + ": arguments must be a JSON object");
      }
      pending.set(hostCall(String(tool), json), [resolve, reject]);
    });
  }
  // A tool by its public name (`fs__read_file`), for names known only at run time. The gateway decides, as for
  // any call, whether the caller may call it.
  globalThis.callTool = function callTool(name, args) {
    return invoke(name, args);
  };

  const tools = Object.create(null);
  for (const [namespace, identifier, tool] of parse(bindings)) {
    const space = tools[namespace] || (tools[namespace] = Object.create(null));
    space[identifier] = function (args) {
      return invoke(tool, args);
    };
  }
  for (const namespace of Object.keys(tools)) Object.freeze(tools[namespace]);
  Object.freeze(tools);

  function show(value) {
    if (typeof value === "string") return value;
    if (value instanceof Error) return String(value);
    try {
      const json = stringify(value);
      return json === undefined ? String(value) : json;
    } catch (e) {
      return String(value);
    }
  }
  function logger(level) {
    return function (...values) {
      hostLog(level, values.map(show).join(" "));
    };
  }
  const console = Object.freeze({
    log: logger("info"),
    info: logger("info"),
    debug: logger("debug"),
    warn: logger("warn"),
    error: logger("error"),
  });
  globalThis.console = console;

  function settle(id, ok, json) {
    const entry = pending.get(id);
    if (entry === undefined) return;
    pending.delete(id);
    if (ok) {
      entry[0](parse(json));
    } else {
      entry[1](new Error(json));
    }
  }

  // The program is the body of an async function: `await` works at its top level and `return` gives the result.
  function run(main) {
    return main(tools, console, input == null ? undefined : parse(input)).then(function (value) {
      const json = stringify(value === undefined ? null : value);
      return json === undefined ? "null" : json;
    });
  }
  return [run, settle];
});
