// Decoder state for incremental decoding (CTranslate2's DecoderState idea): named tensors
// whose first dimension is either the row (sentence x beam) or the sentence (encoder
// keys/values, source mask, sentence-level expert draws), which all beams of a sentence
// share instead of carrying `beam` identical copies. Self-attention keys/values live in
// time caches sized once per batch and written in place at each step; reordering beams or
// dropping finished sentences copies only their filled part.
#pragma once
#include <map>
#include <string>

#include <torch/torch.h>

namespace thor {

struct DecoderState {
  std::map<std::string, torch::Tensor> rows;       // [sentences * beam, ...]
  std::map<std::string, torch::Tensor> sentences;  // [sentences, ...]
  // [sentences * beam, capacity, heads, head_dim]; positions [0, filled) are valid.
  std::map<std::string, torch::Tensor> caches;
  int64_t filled = 0;    // time positions written in every cache
  int64_t capacity = 0;  // positions to allocate at the first write (0: start small, grow)
  int64_t beam = 1;      // rows per sentence, consecutive
  // Sentences that joined a running batch and have not taken their first step: the last
  // `joining` sentences, one row each, after the others' `beam` rows (their first step has
  // one candidate; the next reorder gives them `beam` rows like the others).
  int64_t joining = 0;
  // Output vocabulary of this batch (a shortlist): sorted token ids [V'] (int64, CPU) that
  // the step's columns stand for; undefined = the whole vocabulary.
  torch::Tensor vocab;
  std::map<std::string, torch::Tensor> batch;  // model entries shared by the whole batch
  // Paged (CPU inference): caches are written at [row, position] and never reordered; the
  // row entry rows[kHistory] [rows, capacity] (int64) names, for each current row and
  // position, the cache row that holds it, and is reordered like any row entry.
  bool paged = false;
  // Set by the model for one step when rows started at different positions and the caches
  // are not paged: [rows, filled + 1] bool, true at the positions before a row's first.
  torch::Tensor step_mask;
};

inline constexpr const char* kHistory = "history";
// Row entry present once sentences joined a running batch (admit_state): int64 [rows], the
// position of each row's first step; a row attends to, and numbers its positions from, there.
inline constexpr const char* kStart = "start";

// Writes x [rows, heads, 1, head_dim] at position st.filled of cache `name` (allocating it,
// or growing it when st.capacity was too small) and returns the filled view
// [rows, heads, filled + 1, head_dim]. The caller advances st.filled once per step.
torch::Tensor cache_append(DecoderState& st, const std::string& name, const torch::Tensor& x);

// Paged mode: writes x [rows, heads, 1, head_dim] at [row, st.filled] of cache `name`
// (rows may be fewer than the cache's: finished sentences leave their rows behind) and
// returns the whole buffer [cache rows, capacity, heads, head_dim].
torch::Tensor cache_write(DecoderState& st, const std::string& name, const torch::Tensor& x);

// Paged mode, once per step before the layers: position st.filled of row i is in row i.
// Returns the history [rows, capacity].
const torch::Tensor& history_step(DecoderState& st, int64_t rows);

// The rows of the state: beam per sentence, one per joining sentence.
int64_t state_rows(const DecoderState& st);

// A sentence entry [sentences, ...] repeated onto the rows [rows, ...] (its beams).
torch::Tensor sentence_rows(const DecoderState& st, const torch::Tensor& per_sentence);

// Keeps rows `index` (int64 [N']) in that order, N' = sentences' * beam: rows
// [i * beam, (i + 1) * beam) must all come from one old sentence, which becomes sentence i.
// Afterwards no sentence is joining.
void reorder_state(DecoderState& st, const torch::Tensor& index, int64_t beam);

// Continuous batching: sentences join a running batch between two steps. `add` is the
// state of the new sentences (model.start: sentence entries only, nothing decoded); each
// gets one row, appended after the existing ones, that starts at position st.filled (the
// kStart row entry); where the state has beam > 1 rows per sentence they are `joining`
// until the next reorder. Sentence entries of different sizes (the encoder states of
// longer sources) are padded: bool entries with true (a padding mask), others with zeros.
// Refused for a state with a restricted output vocabulary (a shortlist is chosen for the
// batch it was built for) or row entries it cannot extend.
void admit_state(DecoderState& st, DecoderState add);

// Forgets the first m positions (no row may start before m): the caches and the history
// move down by m, so a batch that sentences keep joining does not grow without end.
void shift_state(DecoderState& st, int64_t m);

}  // namespace thor
