"""Text as it grows: decoding generated tokens one at a time without splitting a UTF-8 character,
and finding stop strings in it, even across tokens or in the middle of one."""

from __future__ import annotations

import codecs


def first_stop(text: str, stops, start: int = 0) -> int | None:
    """Where the earliest of the stop strings begins in text[start:] (an index of text), or None."""
    found = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(found) if found else None


class IncrementalText:
    """The text of a growing sequence of tokens, decoded one token at a time.

    GPT-2 tokens are bytes and can end in the middle of a UTF-8 character: the bytes of an
    unfinished character wait in the decoder until the character is complete (or, at the end, become
    U+FFFD, as `tokenizer.decode` would make them). The text is searched for the stop strings as it
    grows and cut before the first one. `take()` hands out the text in pieces that never split a
    character and never include what could still turn out to be the start of a stop string, so the
    pieces, joined, are the final `text`.
    """

    def __init__(self, tokenizer, stops: tuple[str, ...] = ()):
        self.tokenizer = tokenizer
        self.stops = stops
        self.longest_stop = max(map(len, stops), default=0)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.decoded = ""  # every complete character so far
        self.stop_index: int | None = None  # where the first stop string begins in `decoded`
        self.closed = False
        self.shown = 0  # characters already handed out by take()

    def add(self, token_id: int) -> bool:
        """Decode one more token. True if that completed a stop string."""
        before = len(self.decoded)
        self.decoded += self.decoder.decode(self.tokenizer.token_bytes([token_id])[0])
        return self._search(before)

    def close(self) -> None:
        """No more tokens: the bytes of an unfinished character become U+FFFD."""
        if not self.closed:
            before = len(self.decoded)
            self.decoded += self.decoder.decode(b"", final=True)
            self._search(before)
            self.closed = True

    def _search(self, new_from: int) -> bool:
        if self.stop_index is not None or not self.stops:
            return False
        # A stop string that appears now ends in the new characters, so it starts at most
        # (longest stop - 1) characters before them.
        self.stop_index = first_stop(self.decoded, self.stops, max(0, new_from - self.longest_stop + 1))
        return self.stop_index is not None

    @property
    def text(self) -> str:
        return self.decoded if self.stop_index is None else self.decoded[: self.stop_index]

    def _held_back(self) -> int:
        """Characters at the end that could be the start of a stop string (0 once the text is final)."""
        if self.closed or self.stop_index is not None:
            return 0
        unshown = self.decoded[self.shown :]
        held = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(unshown)), held, -1):
                if unshown.endswith(stop[:n]):
                    held = n
                    break
        return held

    def take(self) -> str:
        """The text that is certain now and was not handed out yet."""
        end = len(self.text) - self._held_back()
        piece = self.decoded[self.shown : end] if end > self.shown else ""
        self.shown = max(self.shown, end)
        return piece
