/** the part of @cycjimmy/jsmpeg-player (JSMpeg) the live player uses; the package ships no types */
declare module '@cycjimmy/jsmpeg-player' {
  interface PlayerOptions {
    canvas: HTMLCanvasElement;
    source: new (url: string, options: { hookOnEstablished?: () => void }) => unknown;
    audio?: boolean;
    pauseWhenHidden?: boolean;
    videoBufferSize?: number;
    onVideoDecode?: (decoder: unknown, time: number) => void;
  }
  class Player {
    constructor(url: string, options: PlayerOptions);
    destroy(): void;
    currentTime: number;
  }
  const JSMpeg: { Player: typeof Player };
  export default JSMpeg;
}
