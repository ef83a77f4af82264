// Entry of the detector worker thread. The worker inherits the TypeScript loader when the process
// was started with `--import tsx`; when the loader was registered at run time (bin/argus.mjs), the
// worker registers it itself (under another URL: a failed import stays failed).
try {
  await import('./detector-thread.ts');
} catch (err) {
  if (err?.code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw err;
  const { register } = await import('tsx/esm/api');
  register();
  await import('./detector-thread.ts?loader=tsx');
}
