export * from './harvest.ts';
export * from './http.ts';
export * from './live.ts';
export * from './ota.ts';
export * from './payloads.ts';
export * from './topics.ts';
