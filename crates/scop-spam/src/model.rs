//! The model: per-token document counts, Robinson's correction and Fisher's
//! chi-square combining.

use crate::chi2::chi2q_ln;
use crate::hash::token_key;
use crate::limits::MAX_CLUES;
use crate::tokenize::{Attachment, Features, with_features};

/// The class of a training message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Wanted mail.
    Ham,
    /// Unwanted mail.
    Spam,
}

/// The label of a classified message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    /// Score at or below [`Params::ham_cutoff`].
    Ham,
    /// Score between the cutoffs: the filter cannot tell.
    Unsure,
    /// Score at or above [`Params::spam_cutoff`].
    Spam,
}

impl Label {
    /// `ham`, `unsure` or `spam`.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Ham => "ham",
            Label::Unsure => "unsure",
            Label::Spam => "spam",
        }
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Numbers of ham and spam training messages (for the model as a whole, or
/// the messages a token appeared in).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Counts {
    /// Ham messages.
    pub ham: u32,
    /// Spam messages.
    pub spam: u32,
}

/// Scoring parameters, stored in the model file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Robinson's `s`: the strength of the prior `x` against the evidence
    /// (in messages). Must be positive.
    pub s: f64,
    /// Robinson's `x`: the spam probability assumed for a token never seen.
    /// In (0, 1).
    pub x: f64,
    /// Tokens whose `f(w)` lies within `min_dev` of ½ are ignored. In [0, ½).
    pub min_dev: f64,
    /// Scores at or below this are [`Label::Ham`].
    pub ham_cutoff: f64,
    /// Scores at or above this are [`Label::Spam`]; in between is
    /// [`Label::Unsure`].
    pub spam_cutoff: f64,
    /// Brown's correction for dependent clues: the chi-square statistics
    /// are divided by `dependence` and so are the degrees of freedom
    /// (1 = Fisher's method as is). Overlapping tokens (a word, its pair,
    /// a domain and its parents) are not independent; without it both
    /// `S` and `H` saturate and too many messages land at ½. At least 1.
    pub dependence: f64,
    /// Most clues combined per message (1..=[`MAX_CLUES`]).
    pub max_clues: u32,
}

impl Default for Params {
    /// Values chosen by cross-validation on the SpamAssassin training groups
    /// (easy-ham-1, hard-ham-1, spam-1) only, forward chaining in time (train
    /// on the older fifths, test on the next); see `examples/crossval.rs`.
    /// The spam cutoff 0.7 (instead of 0.9) came from the same folds: of the
    /// 2,600 messages scored, unsure falls from 215 to 203 with no false
    /// positive and no more false negatives (0.6 gains 4 more but leaves
    /// less margin above the hams near ½).
    fn default() -> Self {
        Params {
            s: 0.05,
            x: 0.8,
            min_dev: 0.1,
            ham_cutoff: 0.3,
            spam_cutoff: 0.7,
            dependence: 1.0,
            max_clues: 50,
        }
    }
}

impl Params {
    /// Whether every field is in its documented range.
    pub fn is_valid(&self) -> bool {
        self.s.is_finite()
            && self.s > 0.0
            && self.x > 0.0
            && self.x < 1.0
            && self.min_dev >= 0.0
            && self.min_dev < 0.5
            && (0.0..=1.0).contains(&self.ham_cutoff)
            && (0.0..=1.0).contains(&self.spam_cutoff)
            && self.ham_cutoff <= self.spam_cutoff
            && self.dependence.is_finite()
            && self.dependence >= 1.0
            && self.dependence <= 1000.0
            && (1..=MAX_CLUES as u32).contains(&self.max_clues)
    }
}

/// A token that weighed in a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Clue {
    /// The token (see [`crate::tokenize()`]).
    pub token: String,
    /// Its Robinson-corrected spam probability `f(w)`.
    pub probability: f64,
    /// The training messages it appeared in.
    pub counts: Counts,
}

/// The outcome of [`Model::classify`].
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Spam score in [0, 1]: `(1 + S − H) / 2`.
    pub score: f64,
    /// The label the cutoffs give the score.
    pub label: Label,
    /// The clues that were combined, strongest first (farthest from ½).
    pub clues: Vec<Clue>,
    /// Distinct tokens of the message.
    pub tokens: usize,
    /// Dangerous attachments, reported whatever the score.
    pub dangerous: Vec<Attachment>,
}

impl Verdict {
    /// Whether the message carries a dangerous attachment.
    pub fn is_dangerous(&self) -> bool {
        !self.dangerous.is_empty()
    }
}

/// A trained Bayesian model. Cheap to clone for per-account copies; all
/// operations are in memory (see [`Model::to_bytes`] and
/// [`Model::from_bytes`] for the file form).
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub(crate) params: Params,
    pub(crate) messages: Counts,
    /// Per-token counts by token key ([`token_key`]).
    pub(crate) tokens: Table,
}

impl Model {
    /// An empty model with the default [`Params`].
    pub fn new() -> Model {
        Model::default()
    }

    /// An empty model with the given parameters (`None` if they are not
    /// valid, see [`Params::is_valid`]).
    pub fn with_params(params: Params) -> Option<Model> {
        params.is_valid().then(|| Model {
            params,
            ..Model::default()
        })
    }

    /// The scoring parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Replaces the scoring parameters; returns `false` (and changes
    /// nothing) if they are not valid.
    pub fn set_params(&mut self, params: Params) -> bool {
        let ok = params.is_valid();
        if ok {
            self.params = params;
        }
        ok
    }

    /// How many ham and spam messages were trained.
    pub fn messages(&self) -> Counts {
        self.messages
    }

    /// How many distinct tokens the model knows.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// The training counts of one token.
    pub fn token(&self, token: &str) -> Option<Counts> {
        self.tokens.get(token_key(token.as_bytes()))
    }

    /// Tokenizes and trains one message.
    pub fn train(&mut self, message: &[u8], class: Class) {
        with_features(message, false, |f| self.train_features(f, class));
    }

    /// Trains one already tokenized message.
    pub fn train_features(&mut self, features: &Features, class: Class) {
        bump(&mut self.messages, class, true);
        self.tokens.with_map(|map| map.add(features.keys(), class));
    }

    /// Removes one message previously trained as `class` (to correct a
    /// mistake, or before re-training it as the other class). Counts never
    /// go below zero; tokens left with no count are forgotten.
    pub fn untrain_features(&mut self, features: &Features, class: Class) {
        bump(&mut self.messages, class, false);
        self.tokens.with_map(|map| {
            for &k in features.keys() {
                map.subtract(k, class);
            }
        });
    }

    /// Tokenizes and untrains one message (see [`Model::untrain_features`]).
    pub fn untrain(&mut self, message: &[u8], class: Class) {
        with_features(message, false, |f| self.untrain_features(f, class));
    }

    /// Train-on-error: classifies the message and trains it as `class` only
    /// when the label was wrong or unsure. Returns whether it trained.
    pub fn train_on_error(&mut self, message: &[u8], class: Class) -> bool {
        with_features(message, true, |features| {
            let verdict = self.classify_features(features);
            let right = matches!(
                (verdict.label, class),
                (Label::Ham, Class::Ham) | (Label::Spam, Class::Spam)
            );
            if !right {
                self.train_features(features, class);
            }
            !right
        })
    }

    /// Robinson's corrected spam probability `f(w)` of a token with these
    /// counts.
    pub fn probability(&self, counts: Counts) -> f64 {
        Robinson::new(self).f(counts)
    }

    /// Tokenizes and classifies one message.
    pub fn classify(&self, message: &[u8]) -> Verdict {
        with_features(message, true, |f| self.classify_features(f))
    }

    /// Classifies one already tokenized message.
    pub fn classify_features(&self, features: &Features) -> Verdict {
        let p = &self.params;
        let robinson = Robinson::new(self);
        // (strength |f − ½|, f, key, token index, counts)
        let mut clues: Vec<(f64, f64, u64, u32, Counts)> = Vec::with_capacity(features.len());
        let keys = features.keys();
        self.tokens.get_each(keys, |i, counts| {
            let f = robinson.f(counts);
            let strength = (f - 0.5).abs();
            if strength >= p.min_dev {
                clues.push((strength, f, keys[i], i as u32, counts));
            }
        });
        // Strongest first; ties broken by key for determinism. Only the
        // kept clues are sorted.
        let order = |a: &(f64, f64, u64, u32, Counts), b: &(f64, f64, u64, u32, Counts)| {
            b.0.total_cmp(&a.0).then_with(|| a.2.cmp(&b.2))
        };
        let keep = p.max_clues as usize;
        if clues.len() > keep {
            clues.select_nth_unstable_by(keep, order);
            clues.truncate(keep);
        }
        clues.sort_unstable_by(order);
        let score = combine(clues.iter().map(|c| c.1), p.dependence);
        let label = if score >= p.spam_cutoff {
            Label::Spam
        } else if score <= p.ham_cutoff {
            Label::Ham
        } else {
            Label::Unsure
        };
        Verdict {
            score,
            label,
            // A new vector of the kept clues' size: collecting in place
            // would keep (or shrink) the allocation sized for every token.
            clues: clues
                .iter()
                .map(|&(_, probability, _, i, counts)| Clue {
                    token: features.token(i as usize).to_string(),
                    probability,
                    counts,
                })
                .collect(),
            tokens: features.len(),
            dangerous: features.dangerous().cloned().collect(),
        }
    }
}

/// The per-token counts, in the form the model was last used in.
#[derive(Debug, Clone)]
pub(crate) enum Table {
    /// A hash map: what training updates. Its slots are seeded per
    /// process, so that the layout stays unpredictable even though keys
    /// are fixed.
    Map(CountMap),
    /// Read-only, ordered linear probing: what a model file loads into, in
    /// one linear pass (no hashing, no random writes); a lookup reads one
    /// cache line. Training first turns it into a [`Table::Map`].
    Probe(ProbeTable),
    /// Sorted and read-only, with a directory: what a model file loads into
    /// when its keys are too skewed for [`Table::Probe`] (a lookup stays
    /// `O(log n)` whatever the keys).
    Sorted(SortedTable),
}

impl Default for Table {
    fn default() -> Table {
        Table::Map(CountMap::default())
    }
}

impl Table {
    pub(crate) fn len(&self) -> usize {
        match self {
            Table::Map(m) => m.len(),
            Table::Probe(t) => t.len,
            Table::Sorted(t) => t.entries.len(),
        }
    }

    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<Counts> {
        match self {
            Table::Map(m) => m.get(key),
            Table::Probe(t) => t.get(key),
            Table::Sorted(t) => t.get(key),
        }
    }

    /// Calls `found(i, counts)` for each `keys[i]` in the table, in order.
    #[inline]
    pub(crate) fn get_each(&self, keys: &[u64], mut found: impl FnMut(usize, Counts)) {
        match self {
            Table::Probe(t) => t.get_each(keys, found),
            _ => {
                for (i, &k) in keys.iter().enumerate() {
                    if let Some(c) = self.get(k) {
                        found(i, c);
                    }
                }
            }
        }
    }

    /// Runs `f` on the map form, converting a read-only table first.
    pub(crate) fn with_map<R>(&mut self, f: impl FnOnce(&mut CountMap) -> R) -> R {
        let mut map = match std::mem::take(self) {
            Table::Map(m) => m,
            Table::Probe(t) => CountMap::from_entries(t.len, t.entries()),
            Table::Sorted(t) => CountMap::from_entries(t.entries.len(), t.entries.into_iter()),
        };
        let r = f(&mut map);
        *self = Table::Map(map);
        r
    }

    /// Every (key, counts) with a non-zero count, keys increasing.
    pub(crate) fn sorted_entries(&self) -> Vec<(u64, Counts)> {
        match self {
            Table::Map(m) => {
                let mut v: Vec<(u64, Counts)> = m.entries().collect();
                v.sort_unstable_by_key(|e| e.0);
                v
            }
            Table::Probe(t) => t.entries().collect(),
            Table::Sorted(t) => t.entries.clone(),
        }
    }
}

/// Counts packed in one word: ham in the low half, spam in the high half;
/// 0 is an empty slot (no entry has both counts zero).
#[inline]
fn pack(c: Counts) -> u64 {
    u64::from(c.ham) | (u64::from(c.spam) << 32)
}

#[inline]
fn unpack(c: u64) -> Counts {
    Counts {
        ham: c as u32,
        spam: (c >> 32) as u32,
    }
}

/// The training map: open addressing with linear probing over
/// `[key, packed counts]` slots, at most half full. A slot is the key times
/// a per-process random odd number, top bits: keys are public hashes, and
/// the seed keeps chosen keys from crowding the same slots.
#[derive(Debug, Clone, Default)]
pub(crate) struct CountMap {
    /// Empty until the first entry; then a power of two.
    slots: Vec<[u64; 2]>,
    shift: u32,
    len: usize,
    seed: u64,
}

/// Slots of the smallest non-empty [`CountMap`] (log2).
const MIN_MAP_BITS: u32 = 10;

impl CountMap {
    fn from_entries(n: usize, entries: impl Iterator<Item = (u64, Counts)>) -> CountMap {
        let mut m = CountMap::default();
        m.reserve(n);
        for (k, c) in entries {
            if (c.ham, c.spam) != (0, 0) {
                m.reserve(1);
                let i = m.find(k);
                if m.slots[i][1] == 0 {
                    m.len += 1;
                }
                m.slots[i] = [k, pack(c)];
            }
        }
        m
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(self.seed) >> self.shift) as usize
    }

    /// The slot holding `key`, or the empty slot where it would go (the
    /// map must not be empty of slots).
    #[inline]
    fn find(&self, key: u64) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let [k, c] = self.slots[i];
            if c == 0 || k == key {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    pub(crate) fn get(&self, key: u64) -> Option<Counts> {
        if self.slots.is_empty() {
            return None;
        }
        let [_, c] = self.slots[self.find(key)];
        (c != 0).then(|| unpack(c))
    }

    /// Room for `extra` more entries at most half full.
    fn reserve(&mut self, extra: usize) {
        let need = 2 * (self.len + extra);
        if need <= self.slots.len() {
            return;
        }
        if self.seed == 0 {
            static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
            self.seed = *SEED.get_or_init(|| {
                use std::hash::BuildHasher as _;
                foldhash::fast::RandomState::default().hash_one(0xc0_u64) | 1
            });
        }
        let bits = (usize::BITS - (need - 1).leading_zeros()).max(MIN_MAP_BITS);
        let old = std::mem::replace(&mut self.slots, vec![[0; 2]; 1 << bits]);
        self.shift = 64 - bits;
        for [k, c] in old {
            if c != 0 {
                let i = self.find(k);
                self.slots[i] = [k, c];
            }
        }
    }

    /// Counts each of `keys` (distinct) once more for `class`. The home
    /// slots of a batch are read first, independently, so that their cache
    /// misses overlap.
    pub(crate) fn add(&mut self, keys: &[u64], class: Class) {
        const BATCH: usize = 16;
        self.reserve(keys.len());
        for batch in keys.chunks(BATCH) {
            let mut touch = 0u64;
            for &k in batch {
                touch ^= self.slots[self.home(k)][1];
            }
            std::hint::black_box(touch);
            for &k in batch {
                let i = self.find(k);
                let [_, c] = self.slots[i];
                if c == 0 {
                    self.len += 1;
                }
                let mut counts = unpack(c);
                bump(&mut counts, class, true);
                self.slots[i] = [k, pack(counts)];
            }
        }
    }

    /// Counts `key` once less for `class` (never below zero); forgets it
    /// when both counts reach zero.
    pub(crate) fn subtract(&mut self, key: u64, class: Class) {
        if self.slots.is_empty() {
            return;
        }
        let i = self.find(key);
        let [_, c] = self.slots[i];
        if c == 0 {
            return;
        }
        let mut counts = unpack(c);
        bump(&mut counts, class, false);
        let c = pack(counts);
        self.slots[i][1] = c;
        if c == 0 {
            self.len -= 1;
            self.close_hole(i);
        }
    }

    /// Backward-shift deletion: moves later entries of the probe run into
    /// the emptied slot `hole` where their home allows.
    fn close_hole(&mut self, mut hole: usize) {
        let mask = self.slots.len() - 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let [k, c] = self.slots[j];
            if c == 0 {
                break;
            }
            let home = self.home(k);
            // The entry may move back to `hole` if `hole` lies on its probe
            // path, from `home` to `j`.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = [k, c];
                hole = j;
            }
        }
        self.slots[hole] = [0, 0];
    }

    /// The entries, in slot order.
    fn entries(&self) -> impl Iterator<Item = (u64, Counts)> + '_ {
        self.slots
            .iter()
            .filter(|s| s[1] != 0)
            .map(|&[k, c]| (k, unpack(c)))
    }
}

/// Builds the read-only table of a model file from its entries, given in
/// strictly increasing key order: a [`ProbeTable`], or a [`SortedTable`]
/// when the keys are too skewed for it.
pub(crate) struct TableLoader {
    probe: Option<ProbeBuilder>,
    sorted: Vec<(u64, Counts)>,
    expected: usize,
}

impl TableLoader {
    /// For about `n` entries.
    pub(crate) fn new(n: usize) -> TableLoader {
        TableLoader {
            probe: Some(ProbeBuilder::new(n)),
            sorted: Vec::new(),
            expected: n,
        }
    }

    /// Adds one entry: its key above every key added so far, its counts not
    /// both zero.
    #[inline]
    pub(crate) fn push(&mut self, key: u64, counts: Counts) {
        if let Some(b) = &mut self.probe {
            if b.push(key, counts) {
                return;
            }
            // Too skewed: every entry goes to the sorted table instead.
            let placed = b.table.len;
            let mut sorted = Vec::with_capacity(self.expected.max(placed + 1));
            sorted.extend(b.table.entries());
            self.sorted = sorted;
            self.probe = None;
        }
        self.sorted.push((key, counts));
    }

    pub(crate) fn finish(self) -> Table {
        match self.probe {
            Some(b) => Table::Probe(b.table),
            None => Table::Sorted(SortedTable::from_sorted(self.sorted)),
        }
    }
}

/// Farthest an entry of a [`ProbeTable`] may sit from its home slot; a
/// lookup reads at most this many slots after the home slot.
const MAX_DISPLACEMENT: usize = 32;

/// Ordered linear probing over keys that are already uniform hashes.
///
/// An entry's home slot is the top bits of its key; entries are placed in
/// increasing key order, each at its home slot or just after the previous
/// entry, whichever is later. Homes increase with keys, so the occupied
/// slots hold increasing keys and the slots from an entry's home to the
/// entry itself are all occupied: a lookup scans from the home slot and
/// stops at the key, at an empty slot or at a larger key. About half the
/// slots are empty and a slot is 16 bytes, so a lookup usually reads one
/// cache line. Keys that crowd the same homes (made so on purpose) would
/// push an entry more than [`MAX_DISPLACEMENT`] slots away: the loader
/// then falls back to a [`SortedTable`].
#[derive(Debug, Clone)]
pub(crate) struct ProbeTable {
    /// `[key, ham | spam << 32]`; counts `[_, 0]` mark an empty slot (no
    /// loaded entry has zero counts). `MAX_DISPLACEMENT` slots past the
    /// last home slot absorb entries pushed off the end.
    slots: Vec<[u64; 2]>,
    shift: u32,
    len: usize,
}

impl ProbeTable {
    #[inline]
    fn get(&self, key: u64) -> Option<Counts> {
        let home = (key >> self.shift) as usize;
        let end = (home + MAX_DISPLACEMENT + 1).min(self.slots.len());
        for &[k, c] in self.slots.get(home..end)? {
            if c == 0 || k > key {
                return None;
            }
            if k == key {
                return Some(unpack(c));
            }
        }
        None
    }

    /// [`Table::get_each`]: the home slots of a batch of keys are read
    /// first, independently of one another, so that their cache misses
    /// overlap; then each key is resolved, mostly from its home slot. The
    /// next batch is read before the current one is resolved, so that its
    /// misses also overlap with that work.
    fn get_each(&self, keys: &[u64], mut found: impl FnMut(usize, Counts)) {
        const BATCH: usize = 32;
        let gather = |batch: &[u64], out: &mut [[u64; 2]; BATCH]| {
            for (slot, &k) in out.iter_mut().zip(batch) {
                if let Some(&s) = self.slots.get((k >> self.shift) as usize) {
                    *slot = s;
                }
            }
        };
        let (mut cur, mut next) = ([[0u64; 2]; BATCH], [[0u64; 2]; BATCH]);
        let mut batches = keys.chunks(BATCH).enumerate().peekable();
        if let Some(&(_, first)) = batches.peek() {
            gather(first, &mut cur);
        }
        while let Some((b, batch)) = batches.next() {
            if let Some(&(_, following)) = batches.peek() {
                gather(following, &mut next);
            }
            for (j, (&k, &[hk, hc])) in batch.iter().zip(&cur).enumerate() {
                let i = b * BATCH + j;
                if hc == 0 || hk > k {
                    continue;
                }
                if hk == k {
                    found(i, unpack(hc));
                } else if let Some(c) = self.get(k) {
                    found(i, c);
                }
            }
            std::mem::swap(&mut cur, &mut next);
        }
    }

    /// The entries, keys increasing.
    fn entries(&self) -> impl Iterator<Item = (u64, Counts)> + '_ {
        self.slots
            .iter()
            .filter(|s| s[1] != 0)
            .map(|&[k, c]| (k, unpack(c)))
    }
}

/// Places entries, given in increasing key order, into a [`ProbeTable`].
struct ProbeBuilder {
    table: ProbeTable,
    next: usize,
}

impl ProbeBuilder {
    /// For `n` entries: at least two slots per entry.
    fn new(n: usize) -> ProbeBuilder {
        let bits = (usize::BITS - n.leading_zeros() + 1).clamp(1, 40);
        ProbeBuilder {
            table: ProbeTable {
                // Zeroed memory: every slot starts empty.
                slots: vec![[0u64; 2]; (1usize << bits) + MAX_DISPLACEMENT],
                shift: 64 - bits,
                len: 0,
            },
            next: 0,
        }
    }

    /// Places one entry (its key above every key placed so far, its counts
    /// not both zero); `false` (and nothing placed) when it would land more
    /// than [`MAX_DISPLACEMENT`] slots from home.
    fn push(&mut self, key: u64, counts: Counts) -> bool {
        let home = (key >> self.table.shift) as usize;
        let at = home.max(self.next);
        if at - home > MAX_DISPLACEMENT {
            return false;
        }
        let Some(slot) = self.table.slots.get_mut(at) else {
            return false;
        };
        *slot = [key, pack(counts)];
        self.next = at + 1;
        self.table.len += 1;
        true
    }
}

/// Entries sorted by key, with a directory by the key's top bits: bucket
/// `b` holds `entries[dir[b]..dir[b + 1]]`. Keys are uniform, so a bucket
/// holds about one entry; a lookup is one directory read and a short
/// search. Skewed keys (chosen to share their top bits) only lengthen a
/// binary search: a lookup never costs more than `O(log n)`.
#[derive(Debug, Clone, Default)]
pub(crate) struct SortedTable {
    entries: Vec<(u64, Counts)>,
    dir: Vec<u32>,
    shift: u32,
}

/// Largest bucket searched linearly; larger ones are binary searched.
const LINEAR_BUCKET: usize = 8;

impl SortedTable {
    /// `entries` must have strictly increasing keys and at most
    /// `u32::MAX` entries (the loader checks both).
    pub(crate) fn from_sorted(entries: Vec<(u64, Counts)>) -> SortedTable {
        let n = entries.len();
        // About one bucket per entry, at least two buckets.
        let bits = (usize::BITS - n.leading_zeros()).clamp(1, 32);
        let shift = 64 - bits;
        let buckets = 1usize << bits;
        let mut dir = Vec::with_capacity(buckets + 1);
        let mut i = 0usize;
        for b in 0..buckets {
            while i < n && ((entries[i].0 >> shift) as usize) < b {
                i += 1;
            }
            dir.push(i as u32);
        }
        dir.push(n as u32);
        SortedTable {
            entries,
            dir,
            shift,
        }
    }

    #[inline]
    fn get(&self, key: u64) -> Option<Counts> {
        let b = (key >> self.shift) as usize;
        let lo = *self.dir.get(b)? as usize;
        let hi = *self.dir.get(b + 1)? as usize;
        let bucket = self.entries.get(lo..hi)?;
        if bucket.len() <= LINEAR_BUCKET {
            bucket.iter().find(|e| e.0 == key).map(|e| e.1)
        } else {
            bucket
                .binary_search_by_key(&key, |e| e.0)
                .ok()
                .map(|i| bucket[i].1)
        }
    }
}

/// Robinson's `f(w)` with the per-model quantities computed once per
/// message instead of once per token.
struct Robinson {
    s: f64,
    sx: f64,
    x: f64,
    inv_ham: f64,
    inv_spam: f64,
}

impl Robinson {
    fn new(model: &Model) -> Robinson {
        let p = &model.params;
        let inv = |n: u32| if n > 0 { 1.0 / f64::from(n) } else { 0.0 };
        Robinson {
            s: p.s,
            sx: p.s * p.x,
            x: p.x,
            inv_ham: inv(model.messages.ham),
            inv_spam: inv(model.messages.spam),
        }
    }

    #[inline]
    fn f(&self, counts: Counts) -> f64 {
        let n = f64::from(counts.ham) + f64::from(counts.spam);
        if n == 0.0 {
            return self.x;
        }
        let ham_ratio = f64::from(counts.ham) * self.inv_ham;
        let spam_ratio = f64::from(counts.spam) * self.inv_spam;
        let pw = if ham_ratio + spam_ratio > 0.0 {
            spam_ratio / (ham_ratio + spam_ratio)
        } else {
            self.x
        };
        (self.sx + n * pw) / (self.s + n)
    }
}

fn bump(c: &mut Counts, class: Class, up: bool) {
    let slot = match class {
        Class::Ham => &mut c.ham,
        Class::Spam => &mut c.spam,
    };
    *slot = if up {
        slot.saturating_add(1)
    } else {
        slot.saturating_sub(1)
    };
}

/// Fisher's combining of the clue probabilities: `S = 1 − Q(−2 Σ ln(1 − f))`,
/// `H = 1 − Q(−2 Σ ln f)`, score `(1 + S − H) / 2`; ½ with no clue.
fn combine(probs: impl Iterator<Item = f64>, dependence: f64) -> f64 {
    let mut ln_f = 0.0;
    let mut ln_1f = 0.0;
    let mut n = 0usize;
    for f in probs {
        let f = f.clamp(1e-12, 1.0 - 1e-12);
        ln_f += f.ln();
        ln_1f += (1.0 - f).ln();
        n += 1;
    }
    if n == 0 {
        return 0.5;
    }
    // Brown: statistic / c with 2n / c degrees of freedom (rounded up to an
    // even number, at least 2).
    let c = dependence.max(1.0);
    let dof = 2 * ((n as f64 / c).ceil() as usize).max(1);
    let ln_qs = chi2q_ln(-2.0 * ln_1f / c, dof);
    let ln_qh = chi2q_ln(-2.0 * ln_f / c, dof);
    // (1 + S − H) / 2 with S = 1 − Qs, H = 1 − Qh.
    let diff = ln_qh.exp() - ln_qs.exp();
    if diff.abs() >= 2.0 * SATURATION_BAND {
        return (0.5 + diff / 2.0).clamp(0.0, 1.0);
    }
    // Saturated: both kinds of evidence are overwhelming (or balanced) and
    // the difference of the tail probabilities is lost to rounding. The
    // message stays unsure, inside a narrow band around ½, ordered by the
    // log-ratio of the tails so that rankings (ROC) keep the information.
    0.5 + SATURATION_BAND * ((ln_qh - ln_qs) / 100.0).tanh()
}

/// Half-width of the band around ½ where saturated scores are ordered by
/// the log-ratio of the chi-square tails.
const SATURATION_BAND: f64 = 1e-9;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_is_symmetric() {
        let a = combine([0.9, 0.8, 0.99].into_iter(), 1.0);
        let b = combine([0.1, 0.2, 0.01].into_iter(), 1.0);
        assert!((a + b - 1.0).abs() < 1e-9, "{a} {b}");
        assert!(a > 0.9);
        assert_eq!(combine(std::iter::empty(), 1.0), 0.5);
        let c = combine([0.9, 0.8, 0.99].into_iter(), 3.0);
        assert!(c > 0.5 && c < a, "{c} {a}");
    }

    #[test]
    fn train_untrain() {
        let mut m = Model::new();
        let msg = b"Subject: hello\r\n\r\nhello world\r\n";
        m.train(msg, Class::Ham);
        assert_eq!(m.messages(), Counts { ham: 1, spam: 0 });
        assert_eq!(m.token("hello"), Some(Counts { ham: 1, spam: 0 }));
        m.untrain(msg, Class::Ham);
        assert_eq!(m.messages(), Counts::default());
        assert_eq!(m.token_count(), 0);
    }

    #[test]
    fn sorted_table_finds_every_key_even_when_skewed() {
        let c = |n: u32| Counts { ham: n, spam: 1 };
        // Uniform keys, and keys that all share their top 40 bits.
        let uniform: Vec<u64> = (0..5000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let skewed: Vec<u64> = (0..5000u64)
            .map(|i| (0x00ab_cdef_1234 << 24) | (i * 3))
            .collect();
        for keys in [uniform, skewed] {
            let mut sorted = keys.clone();
            sorted.sort_unstable();
            let t = SortedTable::from_sorted(
                sorted
                    .iter()
                    .enumerate()
                    .map(|(i, &k)| (k, c(i as u32)))
                    .collect(),
            );
            for (i, &k) in sorted.iter().enumerate() {
                assert_eq!(t.get(k), Some(c(i as u32)));
                assert_eq!(
                    t.get(k.wrapping_add(1)).is_some(),
                    sorted.binary_search(&k.wrapping_add(1)).is_ok()
                );
            }
            assert_eq!(t.get(u64::MAX).is_some(), sorted.last() == Some(&u64::MAX));
        }
        let empty = SortedTable::from_sorted(Vec::new());
        assert_eq!(empty.get(0), None);
        assert_eq!(empty.get(u64::MAX), None);
    }

    /// The loader's table: ordered probing for uniform keys, the sorted
    /// table for keys made to crowd the same slots; either finds every key
    /// and no other.
    #[test]
    fn loaded_table_finds_every_key_and_falls_back_when_skewed() {
        let c = |n: u32| Counts {
            ham: n,
            spam: n % 3,
        };
        let uniform: Vec<u64> = (1..5000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .chain([0, u64::MAX])
            .collect();
        let skewed: Vec<u64> = (0..5000u64)
            .map(|i| (0x00ab_cdef_1234 << 24) | (i * 3))
            .collect();
        for (keys, probe) in [(uniform, true), (skewed, false)] {
            let mut sorted = keys.clone();
            sorted.sort_unstable();
            let mut loader = TableLoader::new(sorted.len());
            for (i, &k) in sorted.iter().enumerate() {
                loader.push(k, c(i as u32 + 1));
            }
            let t = loader.finish();
            assert_eq!(matches!(t, Table::Probe(_)), probe);
            // The batched lookup agrees with the single one.
            let queries: Vec<u64> = sorted
                .iter()
                .flat_map(|&k| [k, k.wrapping_add(1), k ^ (1 << 62)])
                .collect();
            let mut hits = Vec::new();
            t.get_each(&queries, |i, c| hits.push((i, c)));
            let expected: Vec<(usize, Counts)> = queries
                .iter()
                .enumerate()
                .filter_map(|(i, &k)| t.get(k).map(|c| (i, c)))
                .collect();
            assert_eq!(hits, expected);
            assert_eq!(t.len(), sorted.len());
            let entries = t.sorted_entries();
            assert_eq!(entries.len(), sorted.len());
            for (i, &k) in sorted.iter().enumerate() {
                assert_eq!(t.get(k), Some(c(i as u32 + 1)));
                assert_eq!(entries[i], (k, c(i as u32 + 1)));
                for probe in [k.wrapping_add(1), k.wrapping_sub(1), k ^ (1 << 63)] {
                    assert_eq!(
                        t.get(probe).is_some(),
                        sorted.binary_search(&probe).is_ok(),
                        "{probe:#x}"
                    );
                }
            }
        }
        let empty = TableLoader::new(0).finish();
        assert_eq!(empty.get(0), None);
        assert_eq!(empty.get(u64::MAX), None);
    }

    /// The training map against the standard one, through adds, removals
    /// down to zero (backward-shift deletion) and growth.
    #[test]
    fn count_map_agrees_with_a_hash_map() {
        use std::collections::HashMap;
        let mut map = CountMap::default();
        let mut reference: HashMap<u64, Counts> = HashMap::new();
        let mut x = 0x853c_49e6_748f_ea9bu64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..200 {
            // Few distinct keys, so that runs collide and entries vanish.
            let mut keys: Vec<u64> = (0..50).map(|_| next() % 3000).collect();
            keys.sort_unstable();
            keys.dedup();
            let class = if round % 3 == 0 {
                Class::Spam
            } else {
                Class::Ham
            };
            if round % 4 == 3 {
                for &k in &keys {
                    map.subtract(k, class);
                    if let Some(c) = reference.get_mut(&k) {
                        bump(c, class, false);
                        if (c.ham, c.spam) == (0, 0) {
                            reference.remove(&k);
                        }
                    }
                }
            } else {
                map.add(&keys, class);
                for &k in &keys {
                    bump(reference.entry(k).or_default(), class, true);
                }
            }
            assert_eq!(map.len(), reference.len());
            for k in 0..3000 {
                assert_eq!(map.get(k), reference.get(&k).copied(), "key {k}");
            }
        }
        let mut entries: Vec<(u64, Counts)> = map.entries().collect();
        entries.sort_unstable_by_key(|e| e.0);
        let mut expected: Vec<(u64, Counts)> = reference.into_iter().collect();
        expected.sort_unstable_by_key(|e| e.0);
        assert_eq!(entries, expected);
    }

    #[test]
    fn a_loaded_model_trains_like_the_original() {
        let mut m = Model::new();
        m.train(b"Subject: a\r\n\r\nhello world\r\n", Class::Ham);
        let mut loaded = Model::from_bytes(&m.to_bytes()).expect("load");
        assert!(matches!(loaded.tokens, Table::Probe(_)));
        let spam = b"Subject: b\r\n\r\ncheap pills hello\r\n";
        m.train(spam, Class::Spam);
        loaded.train(spam, Class::Spam);
        assert_eq!(loaded.to_bytes(), m.to_bytes());
        loaded.untrain(spam, Class::Spam);
        m.untrain(spam, Class::Spam);
        assert_eq!(loaded.to_bytes(), m.to_bytes());
        assert_eq!(loaded.token("hello"), Some(Counts { ham: 1, spam: 0 }));
    }

    #[test]
    fn train_on_error_learns_once() {
        let mut m = Model::new();
        let spam = b"Subject: cheap pills\r\n\r\nbuy cheap pills now\r\n";
        let ham = b"Subject: lunch\r\n\r\nlunch at noon with the team\r\n";
        assert!(m.train_on_error(spam, Class::Spam));
        assert!(m.train_on_error(ham, Class::Ham));
        assert!(!m.train_on_error(spam, Class::Spam));
        assert_eq!(m.classify(spam).label, Label::Spam);
    }
}
