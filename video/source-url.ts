import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { ArgusError } from '../common/errors.ts';
import { redactUrl } from '../common/net.ts';

/** A camera or recording, parsed from the URL an operator writes in config or on the command line. */
export type SourceSpec =
  | { kind: 'rtsp'; url: string }
  | { kind: 'file'; path: string }
  | { kind: 'v4l2'; device: string }
  | { kind: 'test'; pattern: string };

const TEST_PATTERNS = [
  'smpte',
  'ball',
  'snow',
  'black',
  'white',
  'red',
  'green',
  'blue',
  'checkers-8',
  'circular',
  'pinwheel',
];

/**
 * Accepted forms: `rtsp://…` / `rtsps://…`, `file:///path` or a plain path, `v4l2:///dev/video0`,
 * `test://ball` (GStreamer's videotestsrc patterns).
 */
export function parseSourceUrl(input: string): SourceSpec {
  if (/^rtsps?:\/\//i.test(input)) return { kind: 'rtsp', url: input };
  if (input.startsWith('v4l2://')) {
    const device = input.slice('v4l2://'.length) || '/dev/video0';
    return { kind: 'v4l2', device };
  }
  if (input.startsWith('test://')) {
    const pattern = input.slice('test://'.length) || 'smpte';
    if (!TEST_PATTERNS.includes(pattern)) {
      throw new ArgusError(`unknown test pattern "${pattern}"`, `use one of: ${TEST_PATTERNS.join(', ')}`);
    }
    return { kind: 'test', pattern };
  }
  const path = input.startsWith('file://') ? decodeURIComponent(new URL(input).pathname) : resolve(input);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(input) && !input.startsWith('file://')) {
    throw new ArgusError(`unsupported source URL "${input}"`, 'use rtsp://, file://, v4l2:// or test://');
  }
  if (!existsSync(path)) throw new ArgusError(`video file ${path} does not exist`);
  return { kind: 'file', path };
}

export function describeSource(spec: SourceSpec): string {
  switch (spec.kind) {
    case 'rtsp':
      return redactUrl(spec.url);
    case 'file':
      return spec.path;
    case 'v4l2':
      return `v4l2://${spec.device}`;
    case 'test':
      return `test://${spec.pattern}`;
  }
}

export function isLive(spec: SourceSpec): boolean {
  return spec.kind !== 'file';
}
