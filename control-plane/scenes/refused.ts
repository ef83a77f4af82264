import { Refused } from '../refused.ts';

/** a scene-editor request the control plane refuses, with the HTTP status that says why */
export class SceneRefused extends Refused {
  override readonly name = 'SceneRefused';
}
