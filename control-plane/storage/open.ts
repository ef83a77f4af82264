import type { StorageSettings } from '../config.ts';
import { PostgresRepository } from './postgres.ts';
import type { Repository } from './repository.ts';
import { SqliteRepository } from './sqlite.ts';

/** opens the configured backend and brings its schema up to date */
export async function openRepository(storage: StorageSettings): Promise<Repository> {
  return storage.kind === 'sqlite'
    ? SqliteRepository.open(storage.sqlite)
    : PostgresRepository.open(storage.postgres);
}
