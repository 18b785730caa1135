/*
 * baton_system.h — the few operating-system pieces Swift cannot reach cleanly: a hardware CRC32C,
 * async-signal-safe stop flags, and an atomic exchange of two directories.
 */
#ifndef BATON_SYSTEM_H
#define BATON_SYSTEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CRC32C (Castagnoli), as in iSCSI and ext4: start with crc = 0, feed the bytes in order. Uses the
 * SSE4.2 instruction where the processor has it, a table otherwise (same result). */
uint32_t baton_crc32c(uint32_t crc, const void *data, size_t length);

/* Installs handlers for SIGINT, SIGTERM and SIGUSR1 that only record the signal. */
void baton_install_stop_handlers(void);
/* The first stop signal received (SIGINT, SIGTERM or SIGUSR1), or 0. */
int baton_stop_signal(void);

/* Atomically swaps two paths (renameat2 RENAME_EXCHANGE). Returns 0, or -1 with errno set
 * (EINVAL or ENOSYS where the file system or kernel cannot). */
int baton_rename_exchange(const char *from, const char *to);

/* Starts writing a file range back to disk without waiting (sync_file_range WRITE), so that a
 * long write does not pile up dirty pages for one large fsync at the end. */
int baton_start_writeback(int fd, int64_t offset, int64_t length);

#ifdef __cplusplus
}
#endif
#endif
