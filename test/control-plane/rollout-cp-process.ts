/**
 * A control plane in a process of its own, with the test's artifact catalogue for its rollouts:
 * `node --import tsx rollout-cp-process.ts <config.yaml>`. The restart test SIGKILLs it.
 */
import { createLogger } from '../../common/logger.ts';
import { loadControlPlaneConfig, startControlPlane } from '../../control-plane/index.ts';
import { CatalogueVariants } from './rollout-setup.ts';

const config = await loadControlPlaneConfig(process.argv[2]!);
const cp = await startControlPlane(config, createLogger('control-plane'), {
  artifacts: new CatalogueVariants([1, 2, 3]),
});
process.once('SIGTERM', () => {
  void cp.close().then(() => process.exit(0));
});
