/** a scene-editor request the control plane refuses, with the HTTP status that says why */
export class SceneRefused extends Error {
  override readonly name = 'SceneRefused';
  constructor(
    message: string,
    readonly statusCode: 400 | 404 | 409 | 503,
    readonly hint?: string,
  ) {
    super(message);
  }
}
