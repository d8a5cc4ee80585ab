/*
 * path — the two filesystem-path helpers every command needs: joining a
 * relative path onto a directory, and creating a directory with its parents.
 */
#ifndef CONFAB_BASE_PATH_H
#define CONFAB_BASE_PATH_H

/* REL inside DIR, or REL itself when it is absolute; malloc'd (never NULL:
 * allocation failure aborts). */
char *path_join(const char *dir, const char *rel);

/* mkdir -p PATH (mode 0700 for new directories). Returns 0, or -1 with errno
 * set (ENOTDIR when PATH exists but is not a directory). */
int path_mkdir_p(const char *path);

#endif
