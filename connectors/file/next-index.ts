/**
 * Remembered searches in decoded text, shared by the file sources' readers.
 * @module
 */

/**
 * The first place of one string in a text at or after a position, remembered: asked again for the same text
 * (or the same content decoded again) from a position between the last search's start and what it found, it
 * answers without searching. A reader moving record by record through a text that holds the string rarely, or
 * never, searches once per occurrence instead of once per record to the text's end.
 * @internal
 */
export class NextIndex {
  readonly #of: string;
  #text = "";
  /** Where the last search in #text started, and what it found (text.length: none). */
  #from = 0;
  #at = 0;
  constructor(of: string) {
    this.#of = of;
  }
  /** The first index of the string in `text` at or after `from`; text.length when there is none. */
  in(text: string, from: number): number {
    if (this.#text !== text || from < this.#from || this.#at < from) {
      const p = text.indexOf(this.#of, from);
      this.#text = text;
      this.#from = from;
      this.#at = p < 0 ? text.length : p;
    }
    return this.#at;
  }
}
