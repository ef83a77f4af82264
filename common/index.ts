/** Infrastructure every part of Argus shares: errors, logging, schemas, config files, files, ports, progress. */
export { type LoadedConfig, loadConfigFile, parseConfigText } from './config-file.ts';
export { ArgusError, errorMessage } from './errors.ts';
export { buildDirAtomic, sweepStaging, writeFileAtomic } from './fs-atomic.ts';
export { sha256Hex } from './hash.ts';
export { timeOrderedId } from './ids.ts';
export { createLogger, type Logger, rootLogger } from './logger.ts';
export { freeTcpPort, isListening, redactUrl } from './net.ts';
export { cacheDir, SAMPLE_VIDEO } from './paths.ts';
export { createProgress, type Progress } from './progress.ts';
export { compileSchema, type SchemaIssue, type Validator } from './schema.ts';
