#ifndef EDUHUB_VFS_H
#define EDUHUB_VFS_H

#include <stdint.h>

/// Bytes each encrypted page keeps for itself at its end: a 24-byte XChaCha20 nonce and a 16-byte
/// Poly1305 tag. The database must be created with this many reserved bytes per page.
#define EDUHUB_VFS_RESERVE 40

/// Registers the "eduhub" VFS as SQLite's default, wrapping the previous default. Files with no key
/// registered pass through unchanged. Safe to call more than once. Returns an SQLite result code.
int eduhub_vfs_register(void);

/// Registers the 32-byte key of the database at `path` (the full path SQLite will use) and its page
/// size. The main file, its WAL and its rollback journal are then encrypted with it.
int eduhub_vfs_set_key(const char *path, const unsigned char *key, int page_size);

/// Forgets (and wipes) the key of `path`. Files already open keep their own copy until closed.
void eduhub_vfs_clear_key(const char *path);

/// The number of the last page of `path` (or its WAL frame, or journal record) that failed to
/// authenticate, or 0 if none has.
int64_t eduhub_vfs_last_bad_page(const char *path);

/// The file-control opcode (`sqlite3_file_control(db, "main", op, &flag)`, `flag` an int) that marks
/// a connection's keyed database file as the one a backup shipper checkpoints through (1) or not (0).
///
/// While a process holds an exclusive flock on the database's claim file (its path plus
/// EDUHUB_CHECKPOINT_CLAIM_SUFFIX), every checkpoint through any other connection, in any process,
/// fails with SQLITE_BUSY before it copies a page: the shipper must ship each WAL frame before the
/// WAL can be copied and restarted over it, and only it knows which frames it has shipped.
#define EDUHUB_FCNTL_CHECKPOINT_OWNER 0x45480001
/// The file-control opcode (no argument) that waits, on the shipper's writer once it holds the
/// claim, until no checkpoint begun before the claim still runs (SQLITE_BUSY after about 10 s).
/// The connection must have read the database (its WAL index open).
#define EDUHUB_FCNTL_AWAIT_CHECKPOINTS 0x45480002
#define EDUHUB_CHECKPOINT_CLAIM_SUFFIX "-shipper"

/// Encrypts one page as the VFS does, outside SQLite: the first page_size - EDUHUB_VFS_RESERVE bytes
/// of `in` into `out`, a fresh random nonce and the tag in `out`'s reserved bytes, `kind` ('D' for a
/// database page, 'W' for a WAL frame) and `index` (the page number, or the frame's index from 0) as
/// associated data. `key` is 32 bytes. Returns 0, or -1 on bad arguments.
int eduhub_page_seal(const unsigned char *key, int kind, int64_t index, const unsigned char *in, unsigned char *out,
                     int page_size);
/// Decrypts a page sealed for (`kind`, `index`) in place and zeroes its reserved bytes. Returns 0, or
/// -1 if it does not authenticate.
int eduhub_page_open(const unsigned char *key, int kind, int64_t index, unsigned char *page, int page_size);
#endif
