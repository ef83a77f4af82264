import type { ComponentChildren, JSX } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { describeError } from '../api.ts';

/** a column of a DataTable: its heading and how a row shows in it */
export interface Column<T> {
  title: string;
  cell: (row: T) => ComponentChildren;
  /** the cell's class (`num` for figures) */
  class?: string;
  /** this column names the row (a `th scope="row"`) */
  rowHeader?: boolean;
}

/**
 * The console's table: headings, one row per item, a line saying so when there is none; wrapped
 * so a wide table scrolls on its own on a tablet
 */
export function DataTable<T>({
  id,
  caption,
  columns,
  rows,
  rowKey,
  empty,
  rowProps,
  wrap = true,
}: {
  id?: string;
  /** read by screen readers, and shown */
  caption?: string;
  columns: readonly Column<T>[];
  rows: readonly T[];
  rowKey: (row: T) => string | number;
  /** the line shown without rows */
  empty?: ComponentChildren;
  /** attributes of a row's `tr` (a `data-*` for tests, a `selected` class) */
  rowProps?: (row: T) => JSX.HTMLAttributes<HTMLTableRowElement> & Record<`data-${string}`, string>;
  /** inside its own bordered, scrolling box (false inside a card) */
  wrap?: boolean;
}) {
  const table = (
    <table class="data" id={id}>
      {caption ? <caption>{caption}</caption> : null}
      <thead>
        <tr>
          {columns.map((c) => (
            <th key={c.title} scope="col">
              {c.title}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>
        {rows.length === 0 && empty ? (
          <tr>
            <td colSpan={columns.length} class="muted">
              {empty}
            </td>
          </tr>
        ) : (
          rows.map((row) => (
            <tr key={rowKey(row)} {...(rowProps?.(row) ?? {})}>
              {columns.map((c) =>
                c.rowHeader ? (
                  <th key={c.title} scope="row" class={c.class}>
                    {c.cell(row)}
                  </th>
                ) : (
                  <td key={c.title} class={c.class}>
                    {c.cell(row)}
                  </td>
                ),
              )}
            </tr>
          ))
        )}
      </tbody>
    </table>
  );
  return wrap ? <div class="table-wrap">{table}</div> : table;
}

/** one page of a list the API pages with a cursor */
export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

/**
 * A list read page by page with the API's cursors: the first page whenever `key` changes (a new
 * filter), then `more()` appends the next one. `reload()` reads the first page again.
 */
export function usePaged<T>(fetchPage: (cursor: string | undefined) => Promise<Page<T>>, key: string) {
  const [pages, setPages] = useState<Page<T>[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = useCallback(
    async (cursor?: string) => {
      try {
        const page = await fetchPage(cursor);
        setPages((p) => (cursor && p ? [...p, page] : [page]));
        setError(null);
      } catch (err) {
        setError(describeError(err));
      }
    },
    [key],
  );
  useEffect(() => {
    setPages(null);
    void load();
  }, [load]);
  const next = pages?.at(-1)?.nextCursor ?? null;
  return {
    items: pages ? pages.flatMap((p) => p.items) : null,
    error,
    more: next ? () => load(next) : null,
    reload: () => load(),
  };
}

/** the button that reads the next page of a usePaged list, when there is one */
export function MoreButton({ more, label }: { more: (() => unknown) | null; label: string }) {
  return more ? (
    <button type="button" onClick={() => void more()}>
      {label}
    </button>
  ) : null;
}
