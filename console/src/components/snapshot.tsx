import { useState } from 'preact/hooks';
import { snapshotUrl } from '../api.ts';

interface Props {
  device: string;
  snapshot: { id: string; width: number; height: number };
  /** the object's box, [x1, y1, x2, y2] in source pixels (the snapshot is the full frame) */
  box?: number[] | undefined;
  label: string;
  large?: boolean;
}

/** the uploads a device has not finished yet answer 404: retried a few times, a little later each */
const RETRIES = 5;

/** an event's snapshot with the object's box drawn over it (SVG in the snapshot's own pixels) */
export function Snapshot({ device, snapshot, box, label, large }: Props) {
  const [attempt, setAttempt] = useState(0);
  const [failed, setFailed] = useState(false);
  const src = snapshotUrl(device, snapshot.id) + (attempt > 0 ? `?try=${attempt}` : '');
  const [x1, y1, x2, y2] = box ?? [];
  return (
    <figure class={large ? 'snapshot snapshot-large' : 'snapshot'}>
      {failed ? (
        <div class="snapshot-missing">snapshot not uploaded yet</div>
      ) : (
        <img
          src={src}
          alt={`snapshot: ${label}`}
          width={snapshot.width}
          height={snapshot.height}
          loading="lazy"
          onError={() => {
            if (attempt + 1 >= RETRIES) setFailed(true);
            else setTimeout(() => setAttempt(attempt + 1), 1000 * (attempt + 1));
          }}
        />
      )}
      {box && x1 !== undefined && y1 !== undefined && x2 !== undefined && y2 !== undefined && !failed ? (
        <svg
          viewBox={`0 0 ${snapshot.width} ${snapshot.height}`}
          preserveAspectRatio="none"
          aria-hidden="true"
        >
          <rect
            class="snapshot-box"
            x={x1}
            y={y1}
            width={Math.max(0, x2 - x1)}
            height={Math.max(0, y2 - y1)}
          />
        </svg>
      ) : null}
    </figure>
  );
}
