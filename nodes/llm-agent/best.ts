/**
 * A bounded best-of list for the tool index's ranking (tool-index.ts): keeps the `limit` best
 * entries of a stream without sorting all of them.
 */

/**
 * The `limit` best of a stream of scored entries, in the order of a stable sort by (named first,
 * then score, high first): a binary heap whose root is the worst kept, so an entry that would not
 * make the cut costs one comparison and no allocation. Ties keep the order of offering.
 */
export class Best<E> {
  private readonly heap: Array<{ entry: E; score: number; named: boolean; seq: number }> = [];
  private seq = 0;

  constructor(private readonly limit: number) {}

  offer(entry: E, score: number, named: boolean): void {
    const seq = this.seq++;
    const h = this.heap;
    if (this.limit <= 0) return;
    if (h.length < this.limit) {
      h.push({ entry, score, named, seq });
      this.up(h.length - 1);
      return;
    }
    const root = h[0];
    if (named !== root.named ? !named : score <= root.score) return; // not better than the worst kept
    h[0] = { entry, score, named, seq };
    this.down(0);
  }

  /** The kept entries, best first. */
  sorted(): Array<{ entry: E; score: number }> {
    return [...this.heap].sort((a, b) => worse(b, a) ? -1 : 1).map(({ entry, score }) => ({ entry, score }));
  }

  private up(i: number): void {
    const h = this.heap;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!worse(h[i], h[parent])) return;
      [h[i], h[parent]] = [h[parent], h[i]];
      i = parent;
    }
  }

  private down(i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let w = i;
      if (l < h.length && worse(h[l], h[w])) w = l;
      if (r < h.length && worse(h[r], h[w])) w = r;
      if (w === i) return;
      [h[i], h[w]] = [h[w], h[i]];
      i = w;
    }
  }
}

/** True when `a` ranks below `b`: not named where `b` is, a lower score, or the same score offered later. */
function worse(a: { score: number; named: boolean; seq: number }, b: { score: number; named: boolean; seq: number }): boolean {
  if (a.named !== b.named) return b.named;
  if (a.score !== b.score) return a.score < b.score;
  return a.seq > b.seq;
}
