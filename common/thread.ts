import { Worker, workerData } from 'node:worker_threads';

interface ThreadData<T> {
  module: string;
  data: T;
}

/** a worker thread running the TypeScript module at `module` (a file URL), given `data` */
export function startThread<T>(module: URL, data: T): Worker {
  const threadData: ThreadData<T> = { module: module.href, data };
  return new Worker(new URL('./thread-entry.mjs', import.meta.url), { workerData: threadData });
}

/** inside a thread started by `startThread`: the data it was given */
export function threadData<T>(): T {
  return (workerData as ThreadData<T>).data;
}
