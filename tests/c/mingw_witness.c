/*
 * Second witness: compiled only with the mingw-w64 cross compiler
 * (x86_64-w64-mingw32-gcc -fsyntax-only), never run.
 *
 * It includes mingw-w64's own <certbcli.h> first and records its constants, then
 * includes certadm-emu's include/certbcli.h. Every prototype and FN typedef of ours is a
 * redeclaration of mingw's, so any difference in a parameter or return type is a
 * "conflicting types" error; the constants are compared with _Static_assert.
 */
#define UNICODE
#include <windows.h>
#include <certbcli.h> /* mingw-w64's, from the cross compiler's include path */

/* Enumerators are integer constant expressions (all values but one fit in an int). */
#define KEEP(name) enum { mingw_##name = (name) };
KEEP(CSBACKUP_TYPE_FULL)
KEEP(CSBACKUP_TYPE_LOGS_ONLY)
KEEP(CSBACKUP_TYPE_MASK)
enum { mingw_disable_incremental_all_ones = (CSBACKUP_DISABLE_INCREMENTAL == 0xffffffffUL) };
KEEP(CSRESTORE_TYPE_FULL)
KEEP(CSRESTORE_TYPE_ONLINE)
KEEP(CSRESTORE_TYPE_CATCHUP)
KEEP(CSRESTORE_TYPE_MASK)
KEEP(CSBFT_DIRECTORY)
KEEP(CSBFT_DATABASE_DIRECTORY)
KEEP(CSBFT_LOG_DIRECTORY)
KEEP(CSBFT_LOG)
KEEP(CSBFT_LOG_DIR)
KEEP(CSBFT_CHECKPOINT_DIR)
KEEP(CSBFT_CERTSERVER_DATABASE)
KEEP(CSBFT_PATCH_FILE)
KEEP(CSBFT_UNKNOWN)
KEEP(CSCONTROL_SHUTDOWN)
KEEP(CSCONTROL_SUSPEND)
KEEP(CSCONTROL_RESTART)
static const char mingw_backup_annotation[] = szBACKUPANNOTATION;
static const char mingw_restore_annotation[] = szRESTOREANNOTATION;

/* Drop mingw's macros, keep its declarations, then take ours. */
#undef CSBACKUP_TYPE_FULL
#undef CSBACKUP_TYPE_LOGS_ONLY
#undef CSBACKUP_TYPE_MASK
#undef CSBACKUP_DISABLE_INCREMENTAL
#undef CSRESTORE_TYPE_FULL
#undef CSRESTORE_TYPE_ONLINE
#undef CSRESTORE_TYPE_CATCHUP
#undef CSRESTORE_TYPE_MASK
#undef CSBFT_DIRECTORY
#undef CSBFT_DATABASE_DIRECTORY
#undef CSBFT_LOG_DIRECTORY
#undef CSBFT_LOG
#undef CSBFT_LOG_DIR
#undef CSBFT_CHECKPOINT_DIR
#undef CSBFT_CERTSERVER_DATABASE
#undef CSBFT_PATCH_FILE
#undef CSBFT_UNKNOWN
#undef CSCONTROL_SHUTDOWN
#undef CSCONTROL_SUSPEND
#undef CSCONTROL_RESTART
#undef szBACKUPANNOTATION
#undef szRESTOREANNOTATION
#undef wszBACKUPANNOTATION
#undef wszRESTOREANNOTATION
#undef CSEDB_RSTMAP /* so our struct is declared too: it must then be a compatible tag */
#undef CERTBCLI_CALL
#undef CERTBCLI_API
#define CSEDB_RSTMAP CSEDB_RSTMAPW /* keep mingw's struct: redefining a tag is an error */

#define _CERTBCLI_TYPECHECK
#include "../../include/certbcli.h"

#define SAME(name) _Static_assert(mingw_##name == (name), #name " differs from mingw-w64");
SAME(CSBACKUP_TYPE_FULL)
SAME(CSBACKUP_TYPE_LOGS_ONLY)
SAME(CSBACKUP_TYPE_MASK)
_Static_assert(mingw_disable_incremental_all_ones && CSBACKUP_DISABLE_INCREMENTAL == 0xffffffffUL, "CSBACKUP_DISABLE_INCREMENTAL");
SAME(CSRESTORE_TYPE_FULL)
SAME(CSRESTORE_TYPE_ONLINE)
SAME(CSRESTORE_TYPE_CATCHUP)
SAME(CSRESTORE_TYPE_MASK)
SAME(CSBFT_DIRECTORY)
SAME(CSBFT_DATABASE_DIRECTORY)
SAME(CSBFT_LOG_DIRECTORY)
SAME(CSBFT_LOG)
SAME(CSBFT_LOG_DIR)
SAME(CSBFT_CHECKPOINT_DIR)
SAME(CSBFT_CERTSERVER_DATABASE)
SAME(CSBFT_PATCH_FILE)
SAME(CSBFT_UNKNOWN)
SAME(CSCONTROL_SHUTDOWN)
SAME(CSCONTROL_SUSPEND)
SAME(CSCONTROL_RESTART)
_Static_assert(sizeof mingw_backup_annotation == sizeof szBACKUPANNOTATION, "annotation");
_Static_assert(sizeof mingw_restore_annotation == sizeof szRESTOREANNOTATION, "annotation");
_Static_assert(sizeof(CSEDB_RSTMAPW) == 2 * sizeof(void *), "CSEDB_RSTMAPW layout");

int main(void)
{
    return certbcli_typecheck_count() == 18 ? 0 : 1;
}
