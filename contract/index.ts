export * from './http.ts';
export * from './payloads.ts';
export * from './topics.ts';
