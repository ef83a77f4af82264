export * from './payloads.ts';
export * from './topics.ts';
export * from './http.ts';
