import { useEffect, useState } from 'preact/hooks';
import { api, describeError } from '../api.ts';
import { ErrorNote, Loading, Section } from '../components/bits.tsx';
import { DataTable, MoreButton, usePaged } from '../components/data-table.tsx';
import { time } from '../format.ts';
import type { ArtifactDetailAnswer, ArtifactListAnswer } from '../types.ts';

type Summary = ArtifactListAnswer['artifacts'][number];

/** a JSON value as an indented block (lineage and metrics are the manifest's own shapes) */
const Json = ({ value }: { value: unknown }) => <pre class="json">{JSON.stringify(value, null, 2)}</pre>;

function Detail({ id }: { id: string }) {
  const [a, setA] = useState<ArtifactDetailAnswer | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    setA(null);
    void api<ArtifactDetailAnswer>(`/api/v1/artifacts/${id}`)
      .then(setA)
      .catch((err) => setError(describeError(err)));
  }, [id]);
  if (error) return <ErrorNote error={error} />;
  if (!a) return <Loading what="the artifact" />;
  return (
    <Section title={`${a.kind} ${a.name} v${a.version}`}>
      <dl class="facts">
        <dt>Id (sha256)</dt>
        <dd>
          <code>{a.id}</code>
        </dd>
        <dt>Variant</dt>
        <dd>{a.variant || 'every device'}</dd>
        <dt>Signed by</dt>
        <dd>{a.keyId}</dd>
        <dt>Published</dt>
        <dd>
          {time(a.publishedAt)} by {a.publishedBy}
        </dd>
        <dt>Expires</dt>
        <dd>{time(a.expires)}</dd>
      </dl>
      {a.lineage ? (
        <>
          <h3>Lineage</h3>
          <Json value={a.lineage} />
        </>
      ) : null}
      {a.metrics ? (
        <>
          <h3>Measured metrics</h3>
          <Json value={a.metrics} />
        </>
      ) : null}
    </Section>
  );
}

export function ArtifactsPage() {
  const [kind, setKind] = useState('');
  const [selected, setSelected] = useState<string | null>(null);
  const artifacts = usePaged(
    (cursor) =>
      api<ArtifactListAnswer>('/api/v1/artifacts', { query: { kind, limit: 100, cursor } }).then((a) => ({
        items: a.artifacts,
        nextCursor: a.nextCursor,
      })),
    kind,
  );
  const list = artifacts.items;
  return (
    <>
      <h1>Artifacts</h1>
      <label class="inline">
        Kind{' '}
        <select value={kind} onChange={(e) => setKind(e.currentTarget.value)}>
          <option value="">all</option>
          <option value="model">models</option>
          <option value="scene">scenes</option>
        </select>
      </label>
      <ErrorNote error={artifacts.error} />
      <div class={selected ? 'split' : ''}>
        {!list ? (
          <Loading what="artifacts" />
        ) : (
          <DataTable<Summary>
            id="artifacts"
            rows={list}
            rowKey={(a) => a.id}
            rowProps={(a) => (selected === a.id ? { class: 'selected' } : {})}
            empty="nothing published yet (argus artifacts publish, or the scene editor)"
            columns={[
              { title: 'Kind', cell: (a) => a.kind },
              {
                title: 'Name',
                cell: (a) => (
                  <button type="button" class="link" onClick={() => setSelected(a.id)}>
                    {a.name}
                  </button>
                ),
              },
              { title: 'Version', class: 'num', cell: (a) => `v${a.version}` },
              { title: 'Variant', cell: (a) => a.variant || 'every device' },
              { title: 'Size', class: 'num', cell: (a) => `${(a.bytes / 1_048_576).toFixed(1)} MiB` },
              { title: 'Published', cell: (a) => time(a.publishedAt) },
            ]}
          />
        )}
        {selected ? <Detail id={selected} /> : null}
      </div>
      <MoreButton more={artifacts.more} label="Older artifacts" />
    </>
  );
}
