/**
 * Progress of a long step on stderr: a self-updating line on a terminal, a line every 10 % otherwise
 * (CI logs, pipes). Never writes to stdout, which belongs to machine-readable output.
 */
export interface Progress {
  /** `done` out of `total` units; `total` may be unknown (0) */
  update(done: number, total?: number): void;
  finish(note?: string): void;
}

function formatUnits(n: number, unit: string): string {
  if (unit === 'bytes') {
    if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
    if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(0)} KiB`;
    return `${n} B`;
  }
  return `${n} ${unit}`;
}

export function createProgress(
  label: string,
  unit = 'items',
  stream: NodeJS.WriteStream = process.stderr,
): Progress {
  const tty = stream.isTTY === true && process.env.ARGUS_PROGRESS !== 'plain';
  const quiet = process.env.ARGUS_PROGRESS === 'off';
  const started = Date.now();
  let lastDecile = -1;
  let lastDraw = 0;
  let lastTotal = 0;

  const line = (done: number, total: number) => {
    const pct = total > 0 ? ` ${((100 * done) / total).toFixed(0).padStart(3)}%` : '';
    const of = total > 0 ? ` / ${formatUnits(total, unit)}` : '';
    return `${label}:${pct} ${formatUnits(done, unit)}${of}`;
  };

  return {
    update(done, total = lastTotal) {
      lastTotal = total;
      if (quiet) return;
      if (tty) {
        const now = Date.now();
        if (now - lastDraw < 100 && done < total) return;
        lastDraw = now;
        stream.write(`\r${line(done, total)}\u001b[K`);
        return;
      }
      const decile = total > 0 ? Math.floor((10 * done) / total) : -1;
      if (decile > lastDecile) {
        lastDecile = decile;
        stream.write(`${line(done, total)}\n`);
      }
    },
    finish(note) {
      if (quiet) return;
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      const text = `${label}: done in ${secs} s${note ? ` (${note})` : ''}`;
      stream.write(tty ? `\r${text}\u001b[K\n` : `${text}\n`);
    },
  };
}
