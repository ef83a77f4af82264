// The API's route schemas (imported as types only) augment fastify's types; loading them here lets
// the console's type check resolve that augmentation. Nothing of fastify reaches the bundle.

import type {} from '@fastify/swagger';
import type {} from 'fastify';
import type {} from '../../control-plane/api/auth-plugin.ts';
