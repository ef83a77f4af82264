import type { FastifyReply } from 'fastify';
import { ArgusError } from '../../common/errors.ts';
import { PublishRefused } from '../artifacts/registry.ts';
import { Refused } from '../refused.ts';

const body = (message: string, hint: string | undefined) => ({ error: message, ...(hint ? { hint } : {}) });

/**
 * Runs a route's work and answers a refusal with its status and hint (an ArgusError, what the
 * operator sent being wrong, with 400); anything else goes to the API's error handler
 */
export async function refusals<T>(reply: FastifyReply, fn: () => Promise<T>): Promise<T | FastifyReply> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof Refused) return reply.code(err.statusCode).send(body(err.message, err.hint));
    if (err instanceof PublishRefused) return reply.code(err.status).send(body(err.message, err.hint));
    if (err instanceof ArgusError) return reply.code(400).send(body(err.message, err.hint));
    throw err;
  }
}
