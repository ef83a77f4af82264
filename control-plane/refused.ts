/** a request the control plane refuses, with the HTTP status that says why and what to do */
export class Refused extends Error {
  constructor(
    message: string,
    readonly statusCode: 400 | 404 | 409 | 413 | 503,
    readonly hint?: string,
  ) {
    super(message);
  }
}
