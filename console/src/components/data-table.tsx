import type { ComponentChildren, JSX } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { describeError } from '../api.ts';

/** a column of a DataTable: its heading and how a row shows in it */
export interface Column<T> {
  title: string;
  cell: (row: T) => ComponentChildren;
  /** the cell's class (`num` for figures), or the class of this row's cell */
  class?: string | ((row: T) => string | undefined);
  /** this column names the row (a `th scope="row"`) */
  rowHeader?: boolean;
  /** this row's cell spans as many columns, the next ones giving it their place (one line for several figures) */
  span?: (row: T) => number;
}

/** the cells of one row: each column's, less those a spanning cell before took the place of */
function cells<T>(columns: readonly Column<T>[], row: T) {
  const out: ComponentChildren[] = [];
  for (let i = 0; i < columns.length; ) {
    const c = columns[i]!;
    const span = Math.max(1, Math.min(columns.length - i, c.span?.(row) ?? 1));
    const props = {
      key: c.title,
      class: typeof c.class === 'function' ? c.class(row) : c.class,
      ...(span > 1 ? { colSpan: span } : {}),
    };
    out.push(
      c.rowHeader ? (
        <th scope="row" {...props}>
          {c.cell(row)}
        </th>
      ) : (
        <td {...props}>{c.cell(row)}</td>
      ),
    );
    i += span;
  }
  return out;
}

/**
 * The console's table: headings, one row per item, a line saying so when there is none; wrapped
 * so a wide table scrolls on its own on a tablet
 */
export function DataTable<T>({
  id,
  caption,
  captionHidden = false,
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
  /** the caption is for screen readers only (the page's heading says it already) */
  captionHidden?: boolean;
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
      {caption ? <caption class={captionHidden ? 'sr-only' : undefined}>{caption}</caption> : null}
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
              {cells(columns, row)}
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
 * filter), then `more()` appends the next one. `reload()` reads again as many pages as are shown,
 * from the first (a periodic refresh keeps the rows an operator paged in). Reads are one at a
 * time, in order; an answer for an earlier `key` is dropped.
 */
export function usePaged<T>(fetchPage: (cursor: string | undefined) => Promise<Page<T>>, key: string) {
  const [pages, setPages] = useState<Page<T>[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const list = useRef<{ key: string; pages: Page<T>[] | null; queue: Promise<void> }>({
    key,
    pages: null,
    queue: Promise.resolve(),
  });
  const read = useCallback(
    (step: (shown: Page<T>[] | null) => Promise<Page<T>[]>) => {
      const l = list.current;
      l.queue = l.queue.then(async () => {
        if (list.current !== l) return;
        try {
          const next = await step(l.pages);
          if (list.current !== l) return;
          l.pages = next;
          setPages(next);
          setError(null);
        } catch (err) {
          if (list.current === l) setError(describeError(err));
        }
      });
      return l.queue;
    },
    [key],
  );
  useEffect(() => {
    list.current = { key, pages: null, queue: Promise.resolve() };
    setPages(null);
    void read(async () => [await fetchPage(undefined)]);
  }, [read]);
  const next = pages?.at(-1)?.nextCursor ?? null;
  return {
    items: pages ? pages.flatMap((p) => p.items) : null,
    error,
    more: next
      ? () =>
          read(async (shown) => {
            const cursor = shown?.at(-1)?.nextCursor;
            return shown && cursor ? [...shown, await fetchPage(cursor)] : (shown ?? []);
          })
      : null,
    reload: () =>
      read(async (shown) => {
        const again: Page<T>[] = [];
        let cursor: string | undefined;
        do {
          const page = await fetchPage(cursor);
          again.push(page);
          cursor = page.nextCursor ?? undefined;
        } while (cursor && again.length < (shown?.length ?? 1));
        return again;
      }),
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
