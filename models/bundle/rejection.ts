import { ArgusError } from '../../common/errors.ts';

/**
 * Why a bundle is refused. Each refusal is a BundleRejected with its own reason (for the updater's
 * report and the CLI's status line), message (what is wrong) and hint (what to do).
 */
export type RejectionReason =
  | 'malformed'
  | 'too-large'
  | 'unsigned'
  | 'unknown-key'
  | 'tampered-manifest'
  | 'tampered-file'
  | 'expired'
  | 'not-newer'
  | 'installed-unreadable';

export class BundleRejected extends ArgusError {
  constructor(
    readonly reason: RejectionReason,
    message: string,
    hint: string,
  ) {
    super(message, hint);
    this.name = 'BundleRejected';
  }
}
