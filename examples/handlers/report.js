// A script tool's handler: the body of an async function of (tools, console, input).
// `input` holds the validated arguments; `tools.<namespace>.<tool>` calls other tools as the caller.
const [sum, now] = await Promise.all([
  tools.demo.add({ a: input.a, b: input.b }),
  tools.demo.now({}),
]);
return { sum: sum.sum, at: now };
