// An encrypting SQLite VFS shim, modelled on SQLite's ext/misc/cksumvfs.c.
//
// Every page of a keyed database — in the main file, in its WAL and in its rollback journal — is
// encrypted with XChaCha20-Poly1305 (libsodium): a fresh 24-byte nonce per write (random per file
// handle, then counted), the nonce
// and the 16-byte tag in the page's 40 reserved bytes, and the page's identity (file kind and page
// or frame number) as associated data, so a page moved elsewhere does not authenticate. A wrong key
// or a changed byte makes the read fail with SQLITE_IOERR_DATA; nothing is ever returned unverified.
//
// What the shim relies on, read from SQLite's pager and WAL code (3.40):
// - pages are written whole; the pager reads the 100-byte header of page 1 on its own, so the page
//   size is fixed per key and sub-page reads decrypt the whole page;
// - the WAL has a 32-byte header; each frame is written as two calls (its 24-byte header, then the
//   page) and read either as the page alone or, in recovery, as header and page in one call; a page
//   rewritten within a transaction is overwritten in place, and the checksums of the frames after
//   it are re-read (8 bytes inside a header) and rewritten. Frame
//   headers stay plaintext (no user data: page number, sizes, salts, checksums); their checksum
//   covers the plaintext page, which SQLite reads back through this shim;
// - rollback journal records are a 4-byte page number, the page, a 4-byte checksum, each written
//   and read separately; the journal header is one sector, reported as 512 bytes so that it can
//   never be mistaken for a page;
// - with POWERSAFE_OVERWRITE the WAL is never padded, so a page write is never split.
// A frame header is held back until its page arrives and both go out in one write (half the
// system calls); anything else that touches the file first writes a held header out.
// The reserved bytes read back as zeros, so SQLite's WAL checksums (computed over whole pages as it
// writes them) hold in recovery. The shared-memory WAL index holds no user data and is passed through. Memory-mapped I/O is off
// for keyed files (version-2 I/O methods have no xFetch).
//
// Checkpoints belong to a backup shipper while one runs (see eduhub_vfs.h): the checkpoint lock of
// the WAL index (SQLite's WAL_CKPT_LOCK, slot 1, taken exclusively by every checkpoint: SQLite's
// automatic ones, explicit ones and the last connection's at close) is refused with SQLITE_BUSY to
// every other connection, in any process, while a shipper holds its claim file's flock.

#include "eduhub_vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_BYTES 32
#define NONCE_BYTES 24
#define TAG_BYTES 16
#define WAL_HEADER 32
#define WAL_FRAME_HEADER 24
// SQLite's WAL_CKPT_LOCK: the shared-memory lock slot every checkpoint takes exclusively.
#define WAL_CKPT_LOCK_SLOT 1

_Static_assert(NONCE_BYTES + TAG_BYTES == EDUHUB_VFS_RESERVE, "nonce and tag fill the reserved bytes");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == KEY_BYTES, "XChaCha20-Poly1305 key size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == NONCE_BYTES, "XChaCha20-Poly1305 nonce size");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == TAG_BYTES, "Poly1305 tag size");

// MARK: Key registry

typedef struct KeyEntry {
  char *path;
  unsigned char key[KEY_BYTES];
  int page_size;
  int64_t last_bad_page;
  struct KeyEntry *next;
} KeyEntry;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static KeyEntry *registry = NULL;

static KeyEntry *find_entry_locked(const char *path) {
  for (KeyEntry *e = registry; e; e = e->next) {
    if (strcmp(e->path, path) == 0) return e;
  }
  return NULL;
}

int eduhub_vfs_set_key(const char *path, const unsigned char *key, int page_size) {
  if (!path || !key || page_size < 512 || page_size > 65536 || (page_size & (page_size - 1))) return SQLITE_MISUSE;
  pthread_mutex_lock(&registry_lock);
  KeyEntry *e = find_entry_locked(path);
  if (!e) {
    e = calloc(1, sizeof(KeyEntry));
    if (!e || !(e->path = strdup(path))) {
      free(e);
      pthread_mutex_unlock(&registry_lock);
      return SQLITE_NOMEM;
    }
    e->next = registry;
    registry = e;
  }
  memcpy(e->key, key, KEY_BYTES);
  e->page_size = page_size;
  e->last_bad_page = 0;
  pthread_mutex_unlock(&registry_lock);
  return SQLITE_OK;
}

void eduhub_vfs_clear_key(const char *path) {
  pthread_mutex_lock(&registry_lock);
  for (KeyEntry **link = &registry; *link; link = &(*link)->next) {
    if (strcmp((*link)->path, path) == 0) {
      KeyEntry *e = *link;
      *link = e->next;
      sodium_memzero(e->key, KEY_BYTES);
      free(e->path);
      free(e);
      break;
    }
  }
  pthread_mutex_unlock(&registry_lock);
}

int64_t eduhub_vfs_last_bad_page(const char *path) {
  pthread_mutex_lock(&registry_lock);
  KeyEntry *e = find_entry_locked(path);
  int64_t page = e ? e->last_bad_page : 0;
  pthread_mutex_unlock(&registry_lock);
  return page;
}

static void note_bad_page(const char *path, int64_t page) {
  pthread_mutex_lock(&registry_lock);
  KeyEntry *e = find_entry_locked(path);
  if (e) e->last_bad_page = page;
  pthread_mutex_unlock(&registry_lock);
}

// MARK: Files

enum Kind { KIND_PLAIN = 0, KIND_DB = 'D', KIND_WAL = 'W', KIND_JOURNAL = 'J' };

typedef struct EduhubFile {
  sqlite3_file base;
  sqlite3_file *real;          // the wrapped file, allocated right after this struct
  int kind;
  int page_size;
  int layout_checked;          // page 1 was seen with our page size and reserve
  unsigned char key[KEY_BYTES];
  unsigned char *scratch;      // a WAL frame header and one page
  char *db_path;               // the database's path, for error reports
  unsigned char nonce_prefix[16]; // random per open file: nonces are prefix || counter
  uint64_t nonce_counter;
  int header_pending;          // a WAL frame header waits in scratch for its page
  sqlite3_int64 header_offset;
  int checkpoint_owner;        // the shipper's writer: its checkpoints pass while the claim is held
} EduhubFile;

#define REAL(f) (((EduhubFile *)(f))->real)

static sqlite3_vfs *root_vfs(sqlite3_vfs *vfs) { return (sqlite3_vfs *)vfs->pAppData; }

static void associated_data(unsigned char ad[9], int kind, int64_t index) {
  ad[0] = (unsigned char)kind;
  for (int i = 0; i < 8; i++) ad[1 + i] = (unsigned char)((uint64_t)index >> (8 * i));
}

// MARK: Pages outside SQLite (backups read WAL frames and write restored files with these)

int eduhub_page_seal(const unsigned char *key, int kind, int64_t index, const unsigned char *in, unsigned char *out,
                     int page_size) {
  if (!key || !in || !out || page_size <= EDUHUB_VFS_RESERVE) return -1;
  int body = page_size - EDUHUB_VFS_RESERVE;
  unsigned char ad[9];
  associated_data(ad, kind, index);
  unsigned char *nonce = out + body;
  randombytes_buf(nonce, NONCE_BYTES);
  unsigned long long tag_length = 0;
  return crypto_aead_xchacha20poly1305_ietf_encrypt_detached(out, nonce + NONCE_BYTES, &tag_length, in,
                                                             (unsigned long long)body, ad, sizeof ad, NULL, nonce,
                                                             key) == 0 ? 0 : -1;
}

int eduhub_page_open(const unsigned char *key, int kind, int64_t index, unsigned char *page, int page_size) {
  if (!key || !page || page_size <= EDUHUB_VFS_RESERVE) return -1;
  int body = page_size - EDUHUB_VFS_RESERVE;
  unsigned char ad[9];
  associated_data(ad, kind, index);
  const unsigned char *nonce = page + body;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(page, NULL, page, (unsigned long long)body,
                                                          nonce + NONCE_BYTES, ad, sizeof ad, nonce, key) != 0) {
    return -1;
  }
  memset(page + body, 0, EDUHUB_VFS_RESERVE);
  return 0;
}

// Encrypts the page in `in` into `out` (both page_size bytes).
static void seal_page(EduhubFile *f, const unsigned char *in, unsigned char *out, int64_t index) {
  int body = f->page_size - EDUHUB_VFS_RESERVE;
  unsigned char ad[9];
  associated_data(ad, f->kind, index);
  unsigned char *nonce = out + body;
  unsigned char *tag = nonce + NONCE_BYTES;
  // A fresh nonce without a system call per page: 16 random bytes drawn when the file was opened
  // and a 64-bit counter. Two handles share a prefix with probability 2^-128 per pair; within a
  // handle the counter never repeats.
  memcpy(nonce, f->nonce_prefix, sizeof f->nonce_prefix);
  uint64_t counter = ++f->nonce_counter;
  for (int i = 0; i < 8; i++) nonce[16 + i] = (unsigned char)(counter >> (8 * i));
  unsigned long long tag_length = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt_detached(out, tag, &tag_length, in, (unsigned long long)body, ad,
                                                      sizeof ad, NULL, nonce, f->key);
}

// Decrypts a page in place; 0 if it authenticates (its reserved bytes then read as zeros).
static int decrypt_page(EduhubFile *f, unsigned char *page, int64_t index) {
  int body = f->page_size - EDUHUB_VFS_RESERVE;
  unsigned char ad[9];
  associated_data(ad, f->kind, index);
  const unsigned char *nonce = page + body;
  const unsigned char *tag = nonce + NONCE_BYTES;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(page, NULL, page, (unsigned long long)body, tag, ad,
                                                          sizeof ad, nonce, f->key) != 0) {
    return -1;
  }
  // SQLite sees zeros in the reserved bytes, always: the WAL checksums it computes over pages it
  // writes then match the pages it reads back in recovery, whatever nonce a later write chose.
  memset(page + body, 0, EDUHUB_VFS_RESERVE);
  return 0;
}

// Decrypts a page in place; SQLITE_IOERR_DATA if it does not authenticate.
static int open_page(EduhubFile *f, unsigned char *page, int64_t index, int64_t report) {
  if (decrypt_page(f, page, index) != 0) {
    note_bad_page(f->db_path, report);
    sqlite3_log(SQLITE_IOERR_DATA, "eduhub: page %lld of %s does not authenticate (wrong key or tampered)",
                (long long)report, f->db_path);
    return SQLITE_IOERR_DATA;
  }
  return SQLITE_OK;
}

// Whether `n` bytes at `p` are all zero.
static int is_zero(const unsigned char *p, int n) {
  for (int i = 0; i < n; i++) {
    if (p[i]) return 0;
  }
  return 1;
}

// Page 1's header must say our page size and at least our reserve, or encrypting would overwrite
// b-tree content.
static int check_layout(EduhubFile *f, const unsigned char *page1) {
  int page_size = (page1[16] << 8) | page1[17];
  if (page_size == 1) page_size = 65536;
  if (page_size != f->page_size || page1[20] < EDUHUB_VFS_RESERVE) {
    sqlite3_log(SQLITE_IOERR, "eduhub: %s is not laid out for encryption (page size %d, reserve %d)", f->db_path,
                page_size, page1[20]);
    return SQLITE_IOERR;
  }
  f->layout_checked = 1;
  return SQLITE_OK;
}

// Reads one whole encrypted unit (a page) at `offset` into `page` and decrypts it. Beyond the end
// of the file it is a short read of zeros, as SQLite expects; a partial unit is corruption.
static int read_unit(EduhubFile *f, unsigned char *page, sqlite3_int64 offset, int64_t index, int64_t report) {
  int rc = REAL(f)->pMethods->xRead(REAL(f), page, f->page_size, offset);
  if (rc == SQLITE_IOERR_SHORT_READ) {
    sqlite3_int64 size = 0;
    if (REAL(f)->pMethods->xFileSize(REAL(f), &size) == SQLITE_OK && size <= offset) {
      memset(page, 0, (size_t)f->page_size);
      return SQLITE_IOERR_SHORT_READ;
    }
    note_bad_page(f->db_path, report);
    sqlite3_log(SQLITE_IOERR_DATA, "eduhub: page %lld of %s is truncated", (long long)report, f->db_path);
    return SQLITE_IOERR_DATA;
  }
  if (rc != SQLITE_OK) return rc;
  return open_page(f, page, index, report);
}

// Writes a WAL frame header held back for its page (see x_write), before anything else touches the
// file.
static int flush_header(EduhubFile *f) {
  if (!f->header_pending) return SQLITE_OK;
  f->header_pending = 0;
  return REAL(f)->pMethods->xWrite(REAL(f), f->scratch, WAL_FRAME_HEADER, f->header_offset);
}

static int x_close(sqlite3_file *file) {
  EduhubFile *f = (EduhubFile *)file;
  flush_header(f);
  int rc = REAL(f)->pMethods ? REAL(f)->pMethods->xClose(REAL(f)) : SQLITE_OK;
  sodium_memzero(f->key, KEY_BYTES);
  if (f->scratch) {
    sodium_memzero(f->scratch, (size_t)f->page_size + WAL_FRAME_HEADER);
    sqlite3_free(f->scratch);
  }
  sqlite3_free(f->db_path);
  f->scratch = NULL;
  f->db_path = NULL;
  return rc;
}

static int x_read(sqlite3_file *file, void *buffer, int amount, sqlite3_int64 offset) {
  EduhubFile *f = (EduhubFile *)file;
  const int P = f->page_size;
  if (f->header_pending) {
    int rc = flush_header(f);
    if (rc != SQLITE_OK) return rc;
  }
  unsigned char *out = buffer;
  switch (f->kind) {
  case KIND_DB: {
    int64_t index = offset / P + 1;
    int within = (int)(offset % P);
    if (within == 0 && amount == P) {
      int rc = read_unit(f, out, offset, index, index);
      if (rc == SQLITE_OK && index == 1 && !f->layout_checked) rc = check_layout(f, out);
      return rc;
    }
    if (within + amount > P) return SQLITE_IOERR_READ;
    int rc = read_unit(f, f->scratch, offset - within, index, index);
    if (rc == SQLITE_OK && index == 1 && !f->layout_checked) rc = check_layout(f, f->scratch);
    if (rc == SQLITE_OK || rc == SQLITE_IOERR_SHORT_READ) memcpy(out, f->scratch + within, (size_t)amount);
    return rc;
  }
  case KIND_WAL: {
    if (offset < WAL_HEADER) return REAL(f)->pMethods->xRead(REAL(f), buffer, amount, offset);
    const int frame = WAL_FRAME_HEADER + P;
    int64_t index = (offset - WAL_HEADER) / frame;
    int within = (int)((offset - WAL_HEADER) % frame);
    // Frame headers are plaintext; SQLite also reads parts of one (the checksum, when it rewrites
    // the checksums of frames overwritten within a transaction).
    if (within + amount <= WAL_FRAME_HEADER) return REAL(f)->pMethods->xRead(REAL(f), buffer, amount, offset);
    if (within == WAL_FRAME_HEADER && amount == P) return read_unit(f, out, offset, index, index + 1);
    if (within == 0 && amount == frame) {
      // Whole frames are read by recovery, walking the log to its end (and by the rewriting of a
      // transaction's own checksums). A process killed while writing a frame can leave it torn: a
      // write cut short by the signal over an older frame at that place. Its page then does not
      // authenticate; it is handed over as zeros, which fail the frame's checksum, so the log ends
      // there as SQLite ends it at a torn frame of a plain file (the torn frame's transaction
      // never committed). A page read for its content fails loudly still (the read above).
      int rc = REAL(f)->pMethods->xRead(REAL(f), out, frame, offset);
      if (rc != SQLITE_OK) return rc;
      if (decrypt_page(f, out + WAL_FRAME_HEADER, index) != 0) {
        memset(out + WAL_FRAME_HEADER, 0, (size_t)P);
        sqlite3_log(SQLITE_NOTICE, "eduhub: WAL frame %lld of %s does not authenticate: the log ends before it",
                    (long long)(index + 1), f->db_path);
      }
      return SQLITE_OK;
    }
    return SQLITE_IOERR_READ;
  }
  case KIND_JOURNAL:
    if (amount == P) return read_unit(f, out, offset, offset, offset);
    return REAL(f)->pMethods->xRead(REAL(f), buffer, amount, offset);
  default:
    return REAL(f)->pMethods->xRead(REAL(f), buffer, amount, offset);
  }
}

static int write_unit(EduhubFile *f, const unsigned char *page, sqlite3_int64 offset, int64_t index) {
  seal_page(f, page, f->scratch, index);
  return REAL(f)->pMethods->xWrite(REAL(f), f->scratch, f->page_size, offset);
}

static int x_write(sqlite3_file *file, const void *buffer, int amount, sqlite3_int64 offset) {
  EduhubFile *f = (EduhubFile *)file;
  const int P = f->page_size;
  const unsigned char *in = buffer;
  switch (f->kind) {
  case KIND_DB: {
    int64_t index = offset / P + 1;
    if (offset % P != 0 || amount != P) {
      sqlite3_log(SQLITE_IOERR_WRITE, "eduhub: partial page write to %s", f->db_path);
      return SQLITE_IOERR_WRITE;
    }
    if (index == 1) {
      int rc = check_layout(f, in);
      if (rc != SQLITE_OK) return rc;
    } else if (!f->layout_checked) {
      // This handle has not seen page 1 (a checkpoint may write pages whose page 1 this connection
      // read from the WAL): read it from the file now. A file without page 1 yet has no layout to
      // check: an empty one, or one whose later pages came first (SQLite's backup API copying into
      // a new file spills pages from its cache in any order), leaving page 1 a hole of zeros, which
      // no sealed page ever is.
      int rc = REAL(f)->pMethods->xRead(REAL(f), f->scratch, P, 0);
      if (rc == SQLITE_OK && !is_zero(f->scratch, P)) {
        rc = open_page(f, f->scratch, 1, 1);
        if (rc == SQLITE_OK) rc = check_layout(f, f->scratch);
      } else if (rc == SQLITE_IOERR_SHORT_READ || rc == SQLITE_OK) {
        rc = SQLITE_OK;
      }
      if (rc != SQLITE_OK) return rc;
    }
    return write_unit(f, in, offset, index);
  }
  case KIND_WAL: {
    const int frame = WAL_FRAME_HEADER + P;
    int64_t index = offset < WAL_HEADER ? -1 : (offset - WAL_HEADER) / frame;
    int within = offset < WAL_HEADER ? -1 : (int)((offset - WAL_HEADER) % frame);
    if (f->header_pending && !(within == WAL_FRAME_HEADER && amount == P && offset == f->header_offset + WAL_FRAME_HEADER)) {
      int rc = flush_header(f);
      if (rc != SQLITE_OK) return rc;
    }
    if (offset < WAL_HEADER) return REAL(f)->pMethods->xWrite(REAL(f), buffer, amount, offset);
    if (within == 0 && amount == WAL_FRAME_HEADER) {
      // Hold the header back and write it with its page, which comes next: one write per frame.
      memcpy(f->scratch, in, WAL_FRAME_HEADER);
      f->header_pending = 1;
      f->header_offset = offset;
      return SQLITE_OK;
    }
    if (within + amount <= WAL_FRAME_HEADER) return REAL(f)->pMethods->xWrite(REAL(f), buffer, amount, offset);
    if (within == WAL_FRAME_HEADER && amount == P) {
      if (f->header_pending) {
        // The held header is in scratch[0..24); seal the page right after it and write both.
        f->header_pending = 0;
        seal_page(f, in, f->scratch + WAL_FRAME_HEADER, index);
        return REAL(f)->pMethods->xWrite(REAL(f), f->scratch, WAL_FRAME_HEADER + P, offset - WAL_FRAME_HEADER);
      }
      return write_unit(f, in, offset, index);
    }
    sqlite3_log(SQLITE_IOERR_WRITE, "eduhub: unexpected WAL write to %s", f->db_path);
    return SQLITE_IOERR_WRITE;
  }
  case KIND_JOURNAL:
    if (amount == P) return write_unit(f, in, offset, offset);
    return REAL(f)->pMethods->xWrite(REAL(f), buffer, amount, offset);
  default:
    return REAL(f)->pMethods->xWrite(REAL(f), buffer, amount, offset);
  }
}

static int x_truncate(sqlite3_file *f, sqlite3_int64 size) {
  int rc = flush_header((EduhubFile *)f);
  return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xTruncate(REAL(f), size);
}
static int x_sync(sqlite3_file *f, int flags) {
  int rc = flush_header((EduhubFile *)f);
  return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xSync(REAL(f), flags);
}
static int x_file_size(sqlite3_file *f, sqlite3_int64 *size) {
  int rc = flush_header((EduhubFile *)f);
  return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xFileSize(REAL(f), size);
}
static int x_lock(sqlite3_file *f, int lock) { return REAL(f)->pMethods->xLock(REAL(f), lock); }
static int x_unlock(sqlite3_file *f, int lock) {
  flush_header((EduhubFile *)f);
  return REAL(f)->pMethods->xUnlock(REAL(f), lock);
}
static int x_check_reserved_lock(sqlite3_file *f, int *out) {
  return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int x_file_control(sqlite3_file *file, int op, void *arg) {
  EduhubFile *f = (EduhubFile *)file;
  if (op == EDUHUB_FCNTL_CHECKPOINT_OWNER) {
    if (f->kind != KIND_DB || !arg) return SQLITE_NOTFOUND;
    f->checkpoint_owner = *(int *)arg != 0;
    return SQLITE_OK;
  }
  if (op == EDUHUB_FCNTL_AWAIT_CHECKPOINTS) {
    // A checkpoint that took the lock before the claim existed may still be copying: wait until
    // the lock can be had (then nobody else can take it), for up to about ten seconds.
    if (f->kind != KIND_DB) return SQLITE_NOTFOUND;
    for (int tries = 0; tries < 10000; tries++) {
      int rc = REAL(f)->pMethods->xShmLock(REAL(f), WAL_CKPT_LOCK_SLOT, 1, SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE);
      if (rc == SQLITE_OK) {
        return REAL(f)->pMethods->xShmLock(REAL(f), WAL_CKPT_LOCK_SLOT, 1, SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE);
      }
      if (rc != SQLITE_BUSY) return rc;
      usleep(1000);
    }
    return SQLITE_BUSY;
  }
  if (f->kind != KIND_PLAIN && op == SQLITE_FCNTL_MMAP_SIZE) {
    // Mapped pages would be ciphertext: keyed files never map.
    *(sqlite3_int64 *)arg = 0;
    return SQLITE_OK;
  }
  flush_header(f);
  int rc = REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
  if (rc == SQLITE_OK && op == SQLITE_FCNTL_VFSNAME) {
    *(char **)arg = sqlite3_mprintf("eduhub/%z", *(char **)arg);
  }
  return rc;
}

static int x_sector_size(sqlite3_file *file) {
  EduhubFile *f = (EduhubFile *)file;
  return f->kind == KIND_PLAIN ? REAL(f)->pMethods->xSectorSize(REAL(f)) : 512;
}

static int x_device_characteristics(sqlite3_file *file) {
  EduhubFile *f = (EduhubFile *)file;
  int flags = REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
  return f->kind == KIND_PLAIN ? flags : (flags | SQLITE_IOCAP_POWERSAFE_OVERWRITE);
}

static int x_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **out) {
  return REAL(f)->pMethods->xShmMap(REAL(f), page, size, extend, out);
}
/// Whether a process holds the checkpoint claim of the database at `db_path` (an exclusive flock on
/// "<db_path>-shipper"): a shared try fails then. No file means no shipper; anything else that
/// keeps the answer unknown (no permission, not a regular file, no locks on this file system)
/// counts as claimed: a checkpoint left for later costs a longer WAL, one made over unshipped
/// frames costs the backup.
static int checkpoints_claimed(const char *db_path) {
  char *path = sqlite3_mprintf("%s" EDUHUB_CHECKPOINT_CLAIM_SUFFIX, db_path);
  if (!path) return 1;
  // Never follows a link, never blocks on a FIFO.
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  int error = errno;
  sqlite3_free(path);
  if (fd < 0) return error != ENOENT;
  struct stat info;
  int claimed = 1;
  if (fstat(fd, &info) == 0 && S_ISREG(info.st_mode)) claimed = flock(fd, LOCK_SH | LOCK_NB) != 0;
  close(fd);  // drops the shared lock, if it was had
  return claimed;
}

static int x_shm_lock(sqlite3_file *file, int offset, int n, int flags) {
  EduhubFile *f = (EduhubFile *)file;
  int rc = REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
  // The lock first, then the claim: a claim taken after this check waits for the lock
  // (EDUHUB_FCNTL_AWAIT_CHECKPOINTS), so no checkpoint slips between the two.
  if (rc == SQLITE_OK && offset == WAL_CKPT_LOCK_SLOT && n == 1 && flags == (SQLITE_SHM_LOCK | SQLITE_SHM_EXCLUSIVE) &&
      f->kind == KIND_DB && !f->checkpoint_owner && checkpoints_claimed(f->db_path)) {
    REAL(f)->pMethods->xShmLock(REAL(f), offset, n, SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE);
    return SQLITE_BUSY;
  }
  return rc;
}
static void x_shm_barrier(sqlite3_file *f) { REAL(f)->pMethods->xShmBarrier(REAL(f)); }
static int x_shm_unmap(sqlite3_file *f, int delete_flag) { return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag); }

static const sqlite3_io_methods io_methods = {
    2, x_close, x_read, x_write, x_truncate, x_sync, x_file_size, x_lock, x_unlock, x_check_reserved_lock,
    x_file_control, x_sector_size, x_device_characteristics, x_shm_map, x_shm_lock, x_shm_barrier, x_shm_unmap,
};

// MARK: The VFS

static int x_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags, int *out_flags) {
  EduhubFile *f = (EduhubFile *)file;
  memset(f, 0, sizeof(EduhubFile));
  f->real = (sqlite3_file *)&f[1];
  int kind = KIND_PLAIN;
  const char *database = NULL;
  if (name && (flags & SQLITE_OPEN_MAIN_DB)) {
    kind = KIND_DB;
    database = name;
  } else if (name && (flags & SQLITE_OPEN_WAL)) {
    kind = KIND_WAL;
    database = sqlite3_filename_database(name);
  } else if (name && (flags & SQLITE_OPEN_MAIN_JOURNAL)) {
    kind = KIND_JOURNAL;
    database = sqlite3_filename_database(name);
  }
  if (kind != KIND_PLAIN) {
    pthread_mutex_lock(&registry_lock);
    KeyEntry *e = database ? find_entry_locked(database) : NULL;
    if (e) {
      memcpy(f->key, e->key, KEY_BYTES);
      f->page_size = e->page_size;
    } else {
      kind = KIND_PLAIN;
    }
    pthread_mutex_unlock(&registry_lock);
  }
  f->kind = kind;
  if (kind != KIND_PLAIN) {
    randombytes_buf(f->nonce_prefix, sizeof f->nonce_prefix);
    f->scratch = sqlite3_malloc(f->page_size + WAL_FRAME_HEADER);
    f->db_path = sqlite3_mprintf("%s", database);
    if (!f->scratch || !f->db_path) {
      sodium_memzero(f->key, KEY_BYTES);
      sqlite3_free(f->scratch);
      sqlite3_free(f->db_path);
      return SQLITE_NOMEM;
    }
  }
  int rc = root_vfs(vfs)->xOpen(root_vfs(vfs), name, f->real, flags, out_flags);
  if (rc == SQLITE_OK && f->real->pMethods) {
    file->pMethods = &io_methods;
  } else {
    sodium_memzero(f->key, KEY_BYTES);
    sqlite3_free(f->scratch);
    sqlite3_free(f->db_path);
    f->scratch = NULL;
    f->db_path = NULL;
  }
  return rc;
}

static int x_delete(sqlite3_vfs *v, const char *name, int sync) { return root_vfs(v)->xDelete(root_vfs(v), name, sync); }
static int x_access(sqlite3_vfs *v, const char *name, int flags, int *out) {
  return root_vfs(v)->xAccess(root_vfs(v), name, flags, out);
}
static int x_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out) {
  return root_vfs(v)->xFullPathname(root_vfs(v), name, n, out);
}
static void *x_dl_open(sqlite3_vfs *v, const char *path) { return root_vfs(v)->xDlOpen(root_vfs(v), path); }
static void x_dl_error(sqlite3_vfs *v, int n, char *out) { root_vfs(v)->xDlError(root_vfs(v), n, out); }
static void (*x_dl_sym(sqlite3_vfs *v, void *handle, const char *symbol))(void) {
  return root_vfs(v)->xDlSym(root_vfs(v), handle, symbol);
}
static void x_dl_close(sqlite3_vfs *v, void *handle) { root_vfs(v)->xDlClose(root_vfs(v), handle); }
static int x_randomness(sqlite3_vfs *v, int n, char *out) { return root_vfs(v)->xRandomness(root_vfs(v), n, out); }
static int x_sleep(sqlite3_vfs *v, int micros) { return root_vfs(v)->xSleep(root_vfs(v), micros); }
static int x_current_time(sqlite3_vfs *v, double *out) { return root_vfs(v)->xCurrentTime(root_vfs(v), out); }
static int x_get_last_error(sqlite3_vfs *v, int n, char *out) {
  return root_vfs(v)->xGetLastError ? root_vfs(v)->xGetLastError(root_vfs(v), n, out) : SQLITE_OK;
}
static int x_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *out) {
  return root_vfs(v)->xCurrentTimeInt64(root_vfs(v), out);
}

static sqlite3_vfs eduhub_vfs = {
    2, 0, 0, NULL, "eduhub", NULL, x_open, x_delete, x_access, x_full_pathname, x_dl_open, x_dl_error, x_dl_sym,
    x_dl_close, x_randomness, x_sleep, x_current_time, x_get_last_error, x_current_time_int64,
};

static pthread_once_t register_once = PTHREAD_ONCE_INIT;
static int register_result = SQLITE_ERROR;

static void register_now(void) {
  if (sodium_init() < 0) {
    register_result = SQLITE_ERROR;
    return;
  }
  sqlite3_vfs *root = sqlite3_vfs_find(NULL);
  if (!root) {
    register_result = SQLITE_ERROR;
    return;
  }
  eduhub_vfs.szOsFile = (int)sizeof(EduhubFile) + root->szOsFile;
  eduhub_vfs.mxPathname = root->mxPathname;
  eduhub_vfs.pAppData = root;
  register_result = sqlite3_vfs_register(&eduhub_vfs, 1);
}

int eduhub_vfs_register(void) {
  pthread_once(&register_once, register_now);
  return register_result;
}
