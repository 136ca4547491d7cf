//! `--mask`: the engine that replaces the fetched values in the command's output with a marker naming
//! the variable, `<NAME masked by r4-run>`. Pure: bytes in, bytes out. The pipes and the threads that
//! read them belong to the supervision; each output stream gets its own [`Stream`] from one [`Masker`].
//!
//! # What is replaced
//!
//! Values of [`MIN_LEN`] bytes or more are masked; shorter ones (`1`, `true`, a port) would turn
//! ordinary output into markers. One value under two names is masked under the name that sorts first.
//!
//! - An *occurrence* is a place where a value is written in full. An occurrence that lies inside a
//!   longer one (a value that is a prefix of another, or inside it) is part of the longer one: only
//!   *maximal* occurrences count. Where values do not overlap in the text this is leftmost-longest.
//! - Maximal occurrences that overlap form a *run*, replaced by one marker per distinct value in it, in
//!   the order their occurrences start. Both of two overlapping values are masked, so no tail of either
//!   is left (leftmost-longest alone would leave the end of the second one visible), and a value that
//!   overlaps itself (`aaaaaa` in a line of `a`s) gives one marker, not one per byte.
//! - Every other byte passes unchanged, in order. Where the writes are cut does not matter: the output
//!   is a function of the stream's bytes alone (the reference model in the tests checks this).
//!
//! # What is emitted is final, and only what must wait waits
//!
//! After the bytes up to `pos`, let `h` be the length of the longest suffix of the stream that is a
//! proper prefix of some value (the automaton's state says it: [`Automaton::hold`]), and `F = pos - h`.
//!
//! 1. Every occurrence found later starts at `F` or after: the part of it already written is a
//!    suffix of the stream and a proper prefix of its value, so at most `h` bytes long.
//! 2. A maximal occurrence found so far that starts before `F` is final: only a later occurrence that
//!    starts at or before it could absorb it, and none starts before `F` (1); nor can one come before
//!    it in order. The occurrences are kept sorted by start (and by end), so the final ones come first.
//! 3. A byte before `F` that no occurrence covers is plain text for good: only a later occurrence
//!    could cover it, and none reaches before `F` (1). Absorbing never uncovers a byte.
//! 4. So the output up to `F` (plain bytes, the markers of occurrences that start before `F`, how they
//!    group into runs) is the same whatever follows. [`Stream::feed`] emits exactly that and holds the
//!    rest: the bytes from `F` on (or from the end of the last emitted run, if later). Each of those
//!    bytes may still turn out to be part of a value, since byte `F` starts one. When a value can no
//!    longer grow (no value extends it and no other one is under way), `h` is 0 and its marker goes
//!    out with the write that completed it; a line that is not the start of a value goes out at once.
//! 5. The held tail is at most the longest value's length minus one byte.
//!
//! # Memory
//!
//! A memory scan of a running r4-run must not find the values. The automaton never holds them: its
//! transitions are labelled with byte *classes*, each byte a value uses getting its own class id
//! and every other byte one shared id, and the ids are dealt in an order drawn from the system's
//! random source for each run. A value is thus stored only as a random substitution of itself, and
//! each input byte goes through the same table on its way into the automaton, so no translated copy
//! of the output is made. The automaton's tables are zeroized when it is dropped. This keeps the
//! values out of plain sight, not out of reach: the table is in the same memory.
//!
//! Plaintext the engine keeps: each stream's held tail (at most the beginning of a value), in a
//! buffer reserved once (it never grows, so no reallocation leaves a copy behind); its bytes are
//! zeroed as soon as they are written out, or found to be part of an occurrence (they will never be
//! written), and when it is dropped. The chunks handed to [`Stream::feed`] are the caller's to wipe.
//!
//! # Why an automaton of our own
//!
//! An Aho–Corasick automaton finds every value in one pass, but the engine needs from it two things
//! the `aho-corasick` crate does not expose: the length `h` above at every chunk's end (the crate
//! gives no state depth, and its stream search reads from an `io::Read` into a plain buffer of its
//! own without saying what it holds back), and the longest occurrence ending at each byte among
//! overlapping ones (its overlapping search reports every match, its leftmost-longest search none
//! that overlap). Folding the random classes into the byte table also spares the translation pass
//! that the crate would need. What is here is the textbook construction, laid out for a small memory
//! and a short build (see [`Automaton`]): a trie, failure links, and full transition rows for the
//! states near the root, where ordinary text keeps the automaton.

use crate::report;
use std::sync::Arc;
use zeroize::{Zeroize, Zeroizing};

/// Values shorter than this are not masked (contract: `--mask`).
pub const MIN_LEN: usize = 6;

/// Set in a state's handle when the stream ends with a value there, so the scan tests one bit per
/// byte.
const MATCH: u32 = 1 << 31;
/// States at most this deep get a full transition row; deeper ones follow their child list, then
/// their failure link. Ordinary text rarely goes deeper (docs/performance.md, "The mask").
const DENSE_DEPTH: u32 = 2;
/// A feed writes out what is final once this many occurrences wait, so that a chunk full of values
/// does not grow the list.
const FLUSH_AT: usize = 64;

/// The values to mask, ready to mask any number of streams. Built once per run; cheap to share
/// ([`Masker::stream`] hands out streams that own a reference to it).
pub struct Masker {
    /// `None` when no value is long enough: every stream then passes its bytes straight through.
    automaton: Option<Arc<Automaton>>,
}

impl Masker {
    /// The values to mask, as `(name, value)`. Values under [`MIN_LEN`] bytes are left out.
    pub fn new<'a>(values: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Masker {
        Masker::with_classes(values, shuffle_randomly)
    }

    fn with_classes<'a>(
        values: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        deal: impl FnOnce(&mut [u8]),
    ) -> Masker {
        let values: Vec<(&str, &[u8])> = values
            .into_iter()
            .filter(|(_, v)| v.len() >= MIN_LEN)
            .collect();
        let automaton = (!values.is_empty()).then(|| Arc::new(Automaton::build(&values, deal)));
        Masker { automaton }
    }

    /// How many distinct values are masked.
    pub fn len(&self) -> usize {
        self.automaton.as_ref().map_or(0, |a| a.markers.len())
    }

    pub fn is_empty(&self) -> bool {
        self.automaton.is_none()
    }

    /// A new output stream (one for stdout, one for stderr), at its start.
    pub fn stream(&self) -> Stream {
        let held_capacity = self.automaton.as_ref().map_or(0, |a| 2 * a.max_len);
        Stream {
            automaton: self.automaton.clone(),
            scan: Scan {
                state: 0,
                pos: 0,
                emitted: 0,
                held: Zeroizing::new(Vec::with_capacity(held_capacity)),
                held_start: 0,
                held_base: 0,
                pending: Vec::new(),
                run_end: 0,
                run_values: Vec::new(),
            },
        }
    }
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masker({} values)", self.len())
    }
}

/// One output stream going through the mask: feed it what the command wrote, write out what it
/// gives back, and call [`Stream::finish`] at end of file.
pub struct Stream {
    automaton: Option<Arc<Automaton>>,
    scan: Scan,
}

impl Stream {
    /// Takes the next bytes the command wrote and appends to `out` everything that can be decided
    /// now: plain text and markers. Holds back only the bytes that may still be part of a value.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        match &self.automaton {
            Some(automaton) => self.scan.feed(automaton, chunk, out),
            None => out.extend_from_slice(chunk),
        }
    }

    /// End of the stream: appends what was held back (which can no longer become a value) to `out`.
    /// The stream is then as new, so the next feed starts a new stream.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if let Some(automaton) = &self.automaton {
            self.scan.finish(automaton, out);
        }
    }

    /// How many bytes fed so far are not yet accounted for in the output.
    pub fn held(&self) -> usize {
        (self.scan.pos - self.scan.emitted) as usize
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stream({} bytes held)", self.held())
    }
}

/// A maximal occurrence of a value: stream positions `start..end`.
#[derive(Clone, Copy)]
struct Occurrence {
    start: u64,
    end: u64,
    value: u32,
    /// Its bytes have been zeroed in the held tail.
    wiped: bool,
}

/// Where a stream is: the automaton's state, what has been emitted, and what waits.
struct Scan {
    /// The automaton's state after the last byte, with [`MATCH`] possibly set.
    state: u32,
    /// Bytes fed so far.
    pos: u64,
    /// The output accounts for the stream up to here.
    emitted: u64,
    /// The stream from `held_base` to the start of the current chunk, at `held[held_start..]`
    /// (bytes inside occurrences zeroed; everything before `held_start` zero). Between feeds
    /// `held_base == emitted`.
    held: Zeroizing<Vec<u8>>,
    held_start: usize,
    held_base: u64,
    /// Maximal occurrences not yet emitted, sorted by start and by end.
    pending: Vec<Occurrence>,
    /// The end of the last emitted run, and the values named in it so far.
    run_end: u64,
    run_values: Vec<u32>,
}

impl Scan {
    fn feed(&mut self, a: &Automaton, chunk: &[u8], out: &mut Vec<u8>) {
        let chunk_start = self.pos;
        let mut state = self.state;
        for (i, &byte) in chunk.iter().enumerate() {
            state = a.next(state & !MATCH, byte);
            if state & MATCH != 0 {
                let end = chunk_start + i as u64 + 1;
                let (len, value) = a.matched(state);
                self.found(Occurrence {
                    start: end - u64::from(len),
                    end,
                    value,
                    wiped: false,
                });
                if self.pending.len() >= FLUSH_AT {
                    let frontier = end - u64::from(a.hold(state));
                    self.emit(a, frontier, chunk_start, chunk, out);
                }
            }
        }
        self.state = state;
        self.pos = chunk_start + chunk.len() as u64;
        let frontier = self.pos - u64::from(a.hold(state));
        self.emit(a, frontier, chunk_start, chunk, out);
        self.keep_tail(chunk_start, chunk);
    }

    fn finish(&mut self, a: &Automaton, out: &mut Vec<u8>) {
        // Nothing follows: every occurrence and byte is final.
        self.emit(a, self.pos, self.pos, &[], out);
        self.state = 0;
        self.wipe_held();
        self.held_start = 0;
        self.held_base = self.pos;
        self.run_values.clear();
    }

    /// The longest occurrence ending at this byte: it absorbs the pending ones that start at or after
    /// its start (they end before it, so they lie inside it). None that is final can be absorbed.
    fn found(&mut self, occurrence: Occurrence) {
        while self
            .pending
            .last()
            .is_some_and(|last| last.start >= occurrence.start)
        {
            self.pending.pop();
        }
        self.pending.push(occurrence);
    }

    /// Appends to `out` what is final when no later occurrence can start before `frontier`
    /// (the argument in the module's documentation), and advances `emitted` past it.
    fn emit(
        &mut self,
        a: &Automaton,
        frontier: u64,
        chunk_start: u64,
        chunk: &[u8],
        out: &mut Vec<u8>,
    ) {
        let finals = self
            .pending
            .iter()
            .take_while(|o| o.start < frontier)
            .count();
        for k in 0..finals {
            let occurrence = self.pending[k];
            if occurrence.start >= self.run_end {
                // A new run: the plain text before it first.
                self.plain(self.emitted, occurrence.start, chunk_start, chunk, out);
                self.run_values.clear();
            }
            if !self.run_values.contains(&occurrence.value) {
                out.extend_from_slice(&a.markers[occurrence.value as usize]);
                self.run_values.push(occurrence.value);
            }
            self.run_end = self.run_end.max(occurrence.end);
            self.emitted = self.run_end;
        }
        self.pending.drain(..finals);
        let limit = self
            .pending
            .first()
            .map_or(frontier, |o| o.start.min(frontier));
        if self.emitted < limit {
            self.plain(self.emitted, limit, chunk_start, chunk, out);
            self.emitted = limit;
        }
    }

    /// Appends the stream's bytes `from..to`, which lie in the held tail and the current chunk.
    fn plain(&self, from: u64, to: u64, chunk_start: u64, chunk: &[u8], out: &mut Vec<u8>) {
        if from < chunk_start {
            let at = |p: u64| self.held_start + (p - self.held_base) as usize;
            out.extend_from_slice(&self.held[at(from)..at(to.min(chunk_start))]);
        }
        if to > chunk_start {
            let at = |p: u64| (p - chunk_start) as usize;
            out.extend_from_slice(&chunk[at(from.max(chunk_start))..at(to)]);
        }
    }

    /// Empties the held tail. Only up to its length needs zeroing: past it nothing of ours is left
    /// (every shortening zeroes first), and zeroing the whole reserve on every write of a program
    /// that writes byte by byte would cost more than the scan.
    fn wipe_held(&mut self) {
        self.held[..].zeroize();
        self.held.clear();
    }

    /// After a feed: keeps the stream from `emitted` on, and zeroes the bytes of new occurrences.
    fn keep_tail(&mut self, chunk_start: u64, chunk: &[u8]) {
        if self.emitted >= chunk_start {
            self.wipe_held();
            self.held_start = 0;
            self.held
                .extend_from_slice(&chunk[(self.emitted - chunk_start) as usize..]);
        } else {
            // What was written out from the held tail is zeroed as it goes: a beginning of a value
            // that the next write completed must not stay behind in front of the live part.
            let written = (self.emitted - self.held_base) as usize;
            self.held[self.held_start..self.held_start + written].zeroize();
            self.held_start += written;
            if self.held.len() + chunk.len() > self.held.capacity() {
                // Move the live part to the front rather than let the buffer grow: a reallocation
                // would leave the old block behind unwiped. What is live fits (at most the longest
                // value), and with twice that reserved this happens at most once per that many bytes.
                let live = self.held.len() - self.held_start;
                self.held.copy_within(self.held_start.., 0);
                self.held[live..].zeroize();
                self.held.truncate(live);
                self.held_start = 0;
            }
            self.held.extend_from_slice(chunk);
        }
        self.held_base = self.emitted;
        for occurrence in self.pending.iter_mut().filter(|o| !o.wiped) {
            let from = occurrence.start.max(self.held_base);
            let at = |p: u64| self.held_start + (p - self.held_base) as usize;
            if from < occurrence.end {
                self.held[at(from)..at(occurrence.end)].zeroize();
            }
            occurrence.wiped = true;
        }
    }
}

/// An Aho–Corasick automaton over the values' byte classes.
///
/// The trie is built from the values in sorted order, so its nodes come in depth-first order: the
/// first child of node `n` is `n + 1`, and only the few nodes with more than one child need a list
/// (`branches`). A node is about 10 bytes (failure link, hold, flags, the class that leads to it).
///
/// The states at most [`DENSE_DEPTH`] deep, where ordinary text keeps the automaton, also get a full
/// row: the next state for every class, failures already followed. The scan names a state by a
/// *handle*: for a state with a row, the row's offset in `dense`, so a step is one load with no
/// multiplication on the path from one byte to the next; for the others, `dense.len()` plus the
/// node's number. The root's handle is 0. Handles stay under [`MATCH`]: the values come from an
/// answer of at most 32 MiB, so there are fewer nodes than that.
struct Automaton {
    /// Byte → class id, dealt in a random order for each run.
    classes: [u8; 256],
    /// Class ids in use: the width of a row.
    stride: usize,
    /// The rows, each `stride` handles.
    dense: Vec<u32>,
    /// By row (handle / `stride`): what must be held in that state.
    dense_hold: Vec<u32>,
    /// By node: its failure state (a handle), what must be held there, its flags, and the class of
    /// the byte that leads to it.
    fail: Vec<u32>,
    hold: Vec<u32>,
    flags: Vec<u8>,
    class: Vec<u8>,
    /// The children after the first of the nodes with several, sorted by node: (node, class, handle).
    branches: Vec<(u32, u8, u32)>,
    /// The states that end a value, sorted by handle: (handle, length of the longest value that the
    /// stream ends with there, that value).
    matches: Vec<(u32, u32, u32)>,
    /// The marker of each distinct value.
    markers: Vec<Box<[u8]>>,
    max_len: usize,
}

/// The node has a child, `n + 1`.
const HAS_CHILD: u8 = 1;
/// Its child `n + 1` ends a value.
const CHILD_MATCH: u8 = 2;
/// It has more children, in `branches`.
const BRANCHES: u8 = 4;
/// It has a row (while building: its `fail` slot then holds the row's offset).
const DENSE: u8 = 8;
/// A value ends at it.
const VALUE_END: u8 = 16;
/// The stream ends with a value when it is here (this node's or a shorter one's).
const HAS_MATCH: u8 = 32;

impl Automaton {
    /// The state after `byte` from `state` (a handle, without [`MATCH`]); the result carries
    /// [`MATCH`] if the new state ends a value.
    #[inline(always)]
    fn next(&self, mut state: u32, byte: u8) -> u32 {
        let class = self.classes[usize::from(byte)];
        loop {
            let s = state as usize;
            if s < self.dense.len() {
                return self.dense[s + usize::from(class)];
            }
            let node = s - self.dense.len();
            let flags = self.flags[node];
            if flags & HAS_CHILD != 0 && self.class[node + 1] == class {
                let matched = if flags & CHILD_MATCH != 0 { MATCH } else { 0 };
                return (state + 1) | matched;
            }
            if flags & BRANCHES != 0 {
                if let Some(next) = self.branch(node as u32, class) {
                    return next;
                }
            }
            state = self.fail[node];
        }
    }

    #[cold]
    fn branch(&self, node: u32, class: u8) -> Option<u32> {
        let from = self.branches.partition_point(|b| b.0 < node);
        self.branches[from..]
            .iter()
            .take_while(|b| b.0 == node)
            .find(|b| b.1 == class)
            .map(|b| b.2)
    }

    /// What must be held in the state `handle` (with or without [`MATCH`]).
    fn hold(&self, handle: u32) -> u32 {
        let h = (handle & !MATCH) as usize;
        if h < self.dense.len() {
            self.dense_hold[h / self.stride]
        } else {
            self.hold[h - self.dense.len()]
        }
    }

    /// The longest value the stream ends with in the state `handle` (which carries [`MATCH`]):
    /// its length, and which value it is.
    fn matched(&self, handle: u32) -> (u32, u32) {
        let h = handle & !MATCH;
        let at = self.matches.partition_point(|m| m.0 < h);
        let (_, len, value) = self.matches[at];
        (len, value)
    }

    fn build(values: &[(&str, &[u8])], deal: impl FnOnce(&mut [u8])) -> Automaton {
        // Classes: one per byte the values use, one for all other bytes, dealt in a random order.
        let mut used = [false; 256];
        for (_, value) in values {
            for &b in value.iter() {
                used[usize::from(b)] = true;
            }
        }
        let used_count = used.iter().filter(|&&u| u).count();
        let stride = used_count + usize::from(used_count < 256);
        // At most 256 ids, so each fits in a byte.
        let mut ids: Vec<u8> = (0..stride).map(|i| i as u8).collect();
        deal(&mut ids);
        let other = ids[stride - 1];
        let mut classes = [other; 256];
        let mut next_id = ids.iter();
        for (byte, &is_used) in used.iter().enumerate() {
            if is_used {
                classes[byte] = *next_id.next().expect("one id per used byte");
            }
        }

        // The trie, from the values in sorted order: each shares with the one before it the longest
        // prefix it shares with any before it, and branches off there. (Sorting compares the
        // values in place; nothing is copied.) While building, `hold` holds each node's depth.
        let mut sorted: Vec<(&str, &[u8])> = values.to_vec();
        sorted.sort_unstable_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)));
        let most = 1 + values.iter().map(|(_, v)| v.len()).sum::<usize>();
        let mut fail: Vec<u32> = Vec::with_capacity(most);
        let mut hold: Vec<u32> = Vec::with_capacity(most);
        let mut flags: Vec<u8> = Vec::with_capacity(most);
        let mut class: Vec<u8> = Vec::with_capacity(most);
        fail.push(0);
        hold.push(0);
        flags.push(0);
        class.push(0);
        // (node, child) for the children after the first; (node, value) where values end.
        let mut more_children: Vec<(u32, u32)> = Vec::new();
        let mut ends: Vec<(u32, u32)> = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        let mut path: Vec<u32> = vec![0];
        let mut previous: &[u8] = &[];
        let mut nodes = 1u32;
        let mut max_len = 0;
        for &(name, value) in &sorted {
            max_len = max_len.max(value.len());
            let shared = previous
                .iter()
                .zip(value.iter())
                .take_while(|(a, b)| a == b)
                .count();
            previous = value;
            path.truncate(shared + 1);
            if shared == value.len() {
                // The same value again (sorted, so it is not merely a prefix), under a name that
                // sorts later: the first name stays.
                continue;
            }
            for (depth, &byte) in value.iter().enumerate().skip(shared) {
                let parent = path[depth];
                let node = nodes;
                nodes += 1;
                fail.push(0);
                hold.push(depth as u32 + 1);
                flags.push(0);
                class.push(classes[usize::from(byte)]);
                if flags[parent as usize] & HAS_CHILD == 0 {
                    // A node gets its first child right after it is made: nothing is made in
                    // between (the values that extend it come right after the one it ends).
                    debug_assert_eq!(node, parent + 1);
                    flags[parent as usize] |= HAS_CHILD;
                } else {
                    flags[parent as usize] |= BRANCHES;
                    more_children.push((parent, node));
                }
                path.push(node);
            }
            let end = *path.last().expect("the value's last node");
            flags[end as usize] |= VALUE_END;
            ends.push((end, names.len() as u32));
            names.push(name);
        }
        // `ends` is sorted by node already (each value's end is made after the previous one's).
        more_children.sort_unstable();
        let nodes = nodes as usize;

        // Breadth-first (level by level, by depth), so a node's failure link and everything that
        // follows it are settled before the node needs them.
        let mut level_start = vec![0u32; max_len + 2];
        for &depth in &hold {
            level_start[depth as usize + 1] += 1;
        }
        for d in 1..level_start.len() {
            level_start[d] += level_start[d - 1];
        }
        let mut order = vec![0u32; nodes];
        for (node, &depth) in hold.iter().enumerate() {
            let slot = &mut level_start[depth as usize];
            order[*slot as usize] = node as u32;
            *slot += 1;
        }
        drop(level_start);

        let children = |node: u32, flags: &[u8]| {
            let first = (flags[node as usize] & HAS_CHILD != 0).then_some(node + 1);
            let from = if flags[node as usize] & BRANCHES != 0 {
                more_children.partition_point(|m| m.0 < node)
            } else {
                more_children.len()
            };
            let more = more_children[from..]
                .iter()
                .take_while(move |m| m.0 == node)
                .map(|m| m.1);
            first.into_iter().chain(more)
        };
        // Where `c` leads from `node`, following failure links, as the scan would.
        let transition = |mut node: u32, c: u8, fail: &[u32], flags: &[u8], dense: &[u32]| loop {
            if flags[node as usize] & DENSE != 0 {
                break dense[fail[node as usize] as usize + usize::from(c)];
            }
            if let Some(child) = children(node, flags).find(|&ch| class[ch as usize] == c) {
                break child;
            }
            node = fail[node as usize];
        };
        // Rows in node numbers for now: handles are known once every row is.
        let mut dense: Vec<u32> = Vec::new();
        let mut found: std::collections::HashMap<u32, (u32, u32)> = Default::default();
        for &node in &order {
            let n = node as usize;
            let depth = hold[n];
            let f = fail[n];
            // What must be held, and which value the stream ends with, here.
            if node != 0 {
                if flags[n] & HAS_CHILD == 0 {
                    hold[n] = hold[f as usize];
                }
                if flags[n] & VALUE_END != 0 {
                    let at = ends.partition_point(|e| e.0 < node);
                    found.insert(node, (depth, ends[at].1));
                    flags[n] |= HAS_MATCH;
                } else if flags[f as usize] & HAS_MATCH != 0 {
                    let inherited = found[&f];
                    found.insert(node, inherited);
                    flags[n] |= HAS_MATCH;
                }
            }
            for child in children(node, &flags) {
                fail[child as usize] = if node == 0 {
                    0
                } else {
                    transition(f, class[child as usize], &fail, &flags, &dense)
                };
            }
            if depth <= DENSE_DEPTH {
                let row = dense.len();
                if node == 0 {
                    dense.resize(row + stride, 0);
                } else {
                    // The failure state is shallower: its row is filled.
                    let fail_row = fail[f as usize] as usize;
                    dense.extend_from_within(fail_row..fail_row + stride);
                }
                for child in children(node, &flags) {
                    dense[row + usize::from(class[child as usize])] = child;
                }
                // The node's own failure link is not needed any more: its row stands for it.
                fail[n] = row as u32;
                flags[n] |= DENSE;
            }
        }
        drop(order);

        // Node numbers → handles.
        let dense_len = dense.len();
        let handle = |node: u32, fail: &[u32], flags: &[u8]| {
            if flags[node as usize] & DENSE != 0 {
                fail[node as usize]
            } else {
                (dense_len + node as usize) as u32
            }
        };
        let target = |node: u32, fail: &[u32], flags: &[u8]| {
            let matched = if flags[node as usize] & HAS_MATCH != 0 {
                MATCH
            } else {
                0
            };
            handle(node, fail, flags) | matched
        };
        for next in dense.iter_mut() {
            *next = target(*next, &fail, &flags);
        }
        let mut dense_hold = vec![0u32; dense_len / stride];
        for n in 0..nodes {
            if flags[n] & DENSE != 0 {
                dense_hold[fail[n] as usize / stride] = hold[n];
            } else {
                // A failure state is shallower than its node: if it has no row, its slot still
                // holds a node number.
                fail[n] = handle(fail[n], &fail, &flags);
                if flags[n] & HAS_CHILD != 0 && flags[n + 1] & HAS_MATCH != 0 {
                    flags[n] |= CHILD_MATCH;
                }
            }
        }
        let branches = more_children
            .iter()
            .map(|&(node, child)| (node, class[child as usize], target(child, &fail, &flags)))
            .collect();
        let mut matches: Vec<(u32, u32, u32)> = found
            .into_iter()
            .map(|(node, (len, value))| (handle(node, &fail, &flags), len, value))
            .collect();
        matches.sort_unstable();

        let markers = names
            .iter()
            .map(|name| {
                format!("<{} masked by r4-run>", report::shown(name))
                    .into_bytes()
                    .into_boxed_slice()
            })
            .collect();
        Automaton {
            classes,
            stride,
            dense,
            dense_hold,
            fail,
            hold,
            flags,
            class,
            branches,
            matches,
            markers,
            max_len,
        }
    }
}

impl Drop for Automaton {
    fn drop(&mut self) {
        // The classes in trie order are the values under the substitution: wipe them and the key.
        self.classes.zeroize();
        self.class.zeroize();
        self.dense.zeroize();
        self.fail.zeroize();
        for branch in self.branches.iter_mut() {
            branch.1.zeroize();
        }
    }
}

/// Deals the class ids in an order drawn from the system's random source. If it cannot be read, an
/// order from the clock and this stack's address: the ids only keep the values out of plain sight
/// in memory, so they need to differ from run to run and from the bytes, not to be unguessable.
fn shuffle_randomly(ids: &mut [u8]) {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut random = Zeroizing::new([0u8; 4 * 256]);
    if SystemRandom::new().fill(&mut random[..]).is_err() {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut x = (clock ^ (&random as *const _ as u64)) | 1;
        for chunk in random.chunks_mut(8) {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
    }
    // Fisher–Yates. `% (i + 1)` is biased by at most 256 / 2^32: irrelevant here.
    for i in (1..ids.len()).rev() {
        let r = u32::from_le_bytes(random[4 * i..4 * i + 4].try_into().expect("4 bytes"));
        ids.swap(i, r as usize % (i + 1));
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod bench;
