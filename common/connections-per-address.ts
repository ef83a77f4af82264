import type { Socket } from 'node:net';

/** how long a connection over the limit waits for one of its address to close before it is refused */
export const PER_ADDRESS_GRACE_MS = 500;

interface Waiter {
  socket: Socket;
  timer: NodeJS.Timeout;
  decided: (admitted: boolean) => void;
  onClose: () => void;
}

/**
 * Open connections per remote address, at most `limit` each: the one count the API server and
 * the embedded broker keep. A socket is counted from its admission until its 'close'.
 *
 * A client that closes a connection and opens the next at once (no keep-alive, or a keep-alive
 * hint too short to reuse) is seen to open the new one before the old one's close is read: both
 * arrive in the same turn of the event loop, and 'close' is emitted at the end of it. So a
 * connection over the limit is not refused at once: it waits, unread, up to `graceMs` for one of
 * its address to close (at most `limit` waiting per address; more are refused at once).
 */
export class ConnectionsPerAddress {
  private readonly open = new Map<string, number>();
  private readonly waiting = new Map<string, Waiter[]>();

  constructor(
    private readonly limit: number,
    private readonly graceMs = PER_ADDRESS_GRACE_MS,
  ) {}

  /**
   * `admitted` or `refused` now, or `waiting`: then `decided` is called once with the outcome
   * (not at all if the socket closes while it waits). The caller closes a refused socket, and
   * reads nothing from a waiting one.
   */
  admit(socket: Socket, decided: (admitted: boolean) => void): 'admitted' | 'refused' | 'waiting' {
    // a socket that already closed would never be taken off the count again
    if (socket.destroyed) return 'refused';
    const address = socket.remoteAddress ?? '';
    if (this.count(address) < this.limit) {
      this.take(address, socket);
      return 'admitted';
    }
    const queue = this.waiting.get(address) ?? [];
    if (queue.length >= this.limit) return 'refused';
    const waiter: Waiter = {
      socket,
      decided,
      timer: setTimeout(() => {
        this.drop(address, waiter);
        decided(false);
      }, this.graceMs),
      onClose: () => this.drop(address, waiter),
    };
    socket.once('close', waiter.onClose);
    queue.push(waiter);
    this.waiting.set(address, queue);
    return 'waiting';
  }

  /** connections counted as open from `address` */
  count(address: string): number {
    return this.open.get(address) ?? 0;
  }

  /** addresses with a connection counted as open or waiting */
  get addresses(): number {
    return new Set([...this.open.keys(), ...this.waiting.keys()]).size;
  }

  private take(address: string, socket: Socket): void {
    this.open.set(address, this.count(address) + 1);
    socket.once('close', () => {
      const left = this.count(address) - 1;
      if (left <= 0) this.open.delete(address);
      else this.open.set(address, left);
      const next = this.waiting.get(address)?.[0];
      if (!next) return;
      this.drop(address, next);
      this.take(address, next.socket);
      next.decided(true);
    });
  }

  private drop(address: string, waiter: Waiter): void {
    clearTimeout(waiter.timer);
    waiter.socket.off('close', waiter.onClose);
    const queue = (this.waiting.get(address) ?? []).filter((w) => w !== waiter);
    if (queue.length === 0) this.waiting.delete(address);
    else this.waiting.set(address, queue);
  }
}
