/**
 * An error the operator can act on: `message` says what is wrong, `hint` says what to do about it.
 * Every user-facing failure in Argus is an ArgusError; anything else is a bug.
 */
export class ArgusError extends Error {
  readonly hint: string | undefined;

  constructor(message: string, hint?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ArgusError';
    this.hint = hint;
  }

  /** message and hint in one line-oriented text, as the CLI prints it */
  describe(): string {
    return this.hint ? `${this.message}\n  → ${this.hint}` : this.message;
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof ArgusError) return err.describe();
  if (err instanceof Error) return err.message;
  return String(err);
}
