#!/usr/bin/env node
// Every pending GStreamer appsink pull and bus poll holds a libuv worker thread; size the pool for
// many cameras before anything starts it. Modules load dynamically so this runs first.
process.env.UV_THREADPOOL_SIZE ??= '128';
const { register } = await import('tsx/esm/api');
register();
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
