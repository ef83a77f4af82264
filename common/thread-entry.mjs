// Entry of every worker thread: imports the TypeScript module named by `workerData.module` (a file
// URL). The worker inherits the TypeScript loader when the process was started with
// `--import tsx`; when the loader was registered at run time (bin/argus.mjs), the worker registers
// it itself (under another URL: a failed import stays failed).
import { workerData } from 'node:worker_threads';

const url = workerData.module;
try {
  await import(url);
} catch (err) {
  if (err?.code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw err;
  const { register } = await import('tsx/esm/api');
  register();
  await import(`${url}?loader=tsx`);
}
