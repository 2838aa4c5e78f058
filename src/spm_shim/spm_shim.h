// C interface of the SentencePiece shim (libthor_spm_shim.so).
//
// Why a shim: Debian's libsentencepiece embeds its own protobuf-lite 3.14 and exports
// those symbols, while LibTorch loads the system libprotobuf 3.21. Linked into one
// process, each binds to the other's protobuf internals and the program crashes before
// main. thor therefore loads SentencePiece through this small library with
// dlmopen(LM_ID_NEWLM): a separate link namespace, so each keeps its own protobuf.
// (RTLD_DEEPBIND is not enough: it breaks std::cerr and other copy-relocated globals.)
#pragma once
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// All functions returning int return 0 on success; on failure they write a message to
// err (up to errn bytes, NUL-terminated) and return non-zero.
int thor_spm_train(const char* args, char* err, size_t errn);
void* thor_spm_load(const char* bytes, size_t n, char* err, size_t errn);
void thor_spm_free(void* sp);
int thor_spm_size(void* sp);
int thor_spm_piece_to_id(void* sp, const char* piece);
// which: 0 pad, 1 unk, 2 bos, 3 eos
int thor_spm_special_id(void* sp, int which);
// *out is malloc'ed; release it with thor_spm_free_buffer.
int thor_spm_encode(void* sp, const char* text, size_t n, int** out, size_t* outn, char* err, size_t errn);
int thor_spm_decode(void* sp, const int* ids, size_t n, char** out, size_t* outn, char* err, size_t errn);
void thor_spm_free_buffer(void* p);

#ifdef __cplusplus
}
#endif
