import { type LiveFormatChoice, type LivePlayer, mountLivePlayer } from './player.ts';

/**
 * The control plane's live page (GET /live/:device/:camera): mounts the player into #live with the
 * camera its data attributes name. `window.argusLive` is the player, for tests and the console.
 */
declare global {
  interface Window {
    argusLive?: LivePlayer;
  }
}

const element = document.getElementById('live');
if (element?.dataset.device && element.dataset.camera) {
  window.argusLive = mountLivePlayer(element, {
    device: element.dataset.device,
    camera: element.dataset.camera,
    format: (element.dataset.format as LiveFormatChoice | undefined) ?? 'auto',
  });
  addEventListener('pagehide', () => window.argusLive?.stop());
}
