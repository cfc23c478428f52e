/*
 * certemu.h: the C control API of certadm-emu (libcertadm_emu.so).
 *
 * A test creates an emulated machine with a Certification Authority, then drives it
 * through the certbcli functions (certbcli.h) exactly as a Windows backup program
 * drives Certadm.dll, and uses this API for what Windows does by other means: issue
 * and revoke certificates, stop and start the service (start runs the recovery of a
 * registered restore), lose the disk, map a Windows path to its host file, change the
 * caller's privileges, and inspect the CA.
 *
 *     certemu_ca *ca;
 *     const WCHAR *server;
 *     if (certemu_ca_create(NULL, NULL, &ca) != S_OK) ...;   // unique name, defaults
 *     certemu_ca_server_name_w(ca, &server);
 *     CertSrvBackupPrepareW(server, 0, CSBACKUP_TYPE_FULL, &hbc);
 *     ...
 *     certemu_ca_destroy(ca);
 *
 * Conventions (the same as the certbcli exports):
 *   - Every function returns an HRESULT. None crashes on bad arguments: a NULL
 *     required pointer gets E_POINTER, a NULL, destroyed or forged certemu_ca gets
 *     E_HANDLE, an out-of-range value E_INVALIDARG; a panic inside the emulator
 *     becomes E_UNEXPECTED.
 *   - Out-parameters are set to NULL / 0 on entry, and to their value on success.
 *   - Strings passed in are UTF-8. Strings returned through `char **` belong to the
 *     caller until certemu_free_string. Strings returned through `const char **` or
 *     `const WCHAR **` belong to the CA and live until certemu_ca_destroy.
 *   - After a failure, certemu_last_error explains it (for the certbcli functions too).
 *   - All functions may be called from any thread.
 *
 * Server mode: with CERTADM_EMU_SERVER set (an address printed by `certadm-emu serve`,
 * and CERTADM_EMU_SECRET if the server has a secret), the certbcli functions and this
 * API act on the CAs of that server instead of this process: certemu_ca_create creates a
 * machine there, certemu_ca_destroy drops it, certemu_ca_host_path returns a path on the
 * server's file system. Each thread is one connection; an unreachable server gives
 * 0x800706BA (RPC_S_SERVER_UNAVAILABLE).
 */

#ifndef CERTADM_EMU_CERTEMU_H
#define CERTADM_EMU_CERTEMU_H

#include "certbcli.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- HRESULT values
 * The codes the emulator returns (winerror.h names; defined here only if missing). */

/* SUCCEEDED, FAILED and S_OK come from certbcli.h. */
#ifndef S_FALSE
#define S_FALSE ((HRESULT)1)
#endif
#ifndef E_UNEXPECTED
#define E_UNEXPECTED ((HRESULT)0x8000FFFF)
#endif
#ifndef E_NOTIMPL
#define E_NOTIMPL ((HRESULT)0x80004001)
#endif
#ifndef E_POINTER
#define E_POINTER ((HRESULT)0x80004003)
#endif
#ifndef E_FAIL
#define E_FAIL ((HRESULT)0x80004005)
#endif
#ifndef E_ACCESSDENIED
#define E_ACCESSDENIED ((HRESULT)0x80070005)
#endif
#ifndef E_HANDLE
#define E_HANDLE ((HRESULT)0x80070006)
#endif
#ifndef E_OUTOFMEMORY
#define E_OUTOFMEMORY ((HRESULT)0x8007000E)
#endif
#ifndef E_INVALIDARG
#define E_INVALIDARG ((HRESULT)0x80070057)
#endif
/* HRESULT_FROM_WIN32 values */
#define CERTEMU_E_FILE_NOT_FOUND ((HRESULT)0x80070002)        /* ERROR_FILE_NOT_FOUND */
#define CERTEMU_E_SHARING_VIOLATION ((HRESULT)0x80070020)     /* ERROR_SHARING_VIOLATION */
#define CERTEMU_E_BAD_NETPATH ((HRESULT)0x80070035)           /* ERROR_BAD_NETPATH */
#define CERTEMU_E_INVALID_NAME ((HRESULT)0x8007007B)          /* ERROR_INVALID_NAME */
#define CERTEMU_E_BAD_PATHNAME ((HRESULT)0x800700A1)          /* ERROR_BAD_PATHNAME */
#define CERTEMU_E_ALREADY_EXISTS ((HRESULT)0x800700B7)        /* ERROR_ALREADY_EXISTS */
#define CERTEMU_E_RPC_SERVER_UNAVAILABLE ((HRESULT)0x800706BA) /* RPC_S_SERVER_UNAVAILABLE */
#define CERTEMU_E_RPC_DISCONNECTED ((HRESULT)0x80010108)      /* RPC_E_DISCONNECTED */
#define CERTEMU_E_SERVER_SUSPENDED ((HRESULT)0x80094006)      /* CERTSRV_E_SERVER_SUSPENDED */
#define CERTEMU_E_NO_DB_SESSIONS ((HRESULT)0x8009400F)        /* CERTSRV_E_NO_DB_SESSIONS */
/* ESE errors (0xC8000000 | -JET_err) */
#define CERTEMU_E_JET_BACKUP_IN_PROGRESS ((HRESULT)0xC80001F9)      /* -505 */
#define CERTEMU_E_JET_RESTORE_IN_PROGRESS ((HRESULT)0xC80001FA)     /* -506 */
#define CERTEMU_E_JET_INVALID_BACKUP_SEQUENCE ((HRESULT)0xC8000209) /* -521 */
#define CERTEMU_E_JET_MISSING_LOG_FILE ((HRESULT)0xC8000210)        /* -528 */
#define CERTEMU_E_JET_MISSING_RESTORE_LOG_FILES ((HRESULT)0xC800022D) /* -557 */
#define CERTEMU_E_JET_MISSING_FULL_BACKUP ((HRESULT)0xC8000230)     /* -560 */

/* ---------------------------------------------------------------- certsrv.h values */

#ifndef IF_NOREMOTEICERTADMINBACKUP
#define IF_LOCKICERTREQUEST 0x00000001
#define IF_NOREMOTEICERTREQUEST 0x00000002
#define IF_NOLOCALICERTREQUEST 0x00000004
#define IF_NORPCICERTREQUEST 0x00000008
#define IF_NOREMOTEICERTADMIN 0x00000010
#define IF_NOLOCALICERTADMIN 0x00000020
#define IF_NOREMOTEICERTADMINBACKUP 0x00000040
#define IF_NOLOCALICERTADMINBACKUP 0x00000080
#define IF_NOSNAPSHOTBACKUP 0x00000100
#define IF_ENFORCEENCRYPTICERTREQUEST 0x00000200
#define IF_ENFORCEENCRYPTICERTADMIN 0x00000400
#define IF_DEFAULT                                                                        \
    (IF_NOREMOTEICERTADMINBACKUP | IF_LOCKICERTREQUEST | IF_ENFORCEENCRYPTICERTREQUEST | \
     IF_ENFORCEENCRYPTICERTADMIN)
#endif
/* The certutil -backupDB layout (certsrv.h wszDBBACKUPSUBDIR, wszDBBACKUPCERTBACKDAT),
 * as UTF-8 host names: DIR/DataBase/certbkxp.dat holds the raw
 * CertSrvRestoreGetDatabaseLocationsW list of a full backup. */
#define CERTEMU_BACKUP_SUBDIR "DataBase"
#define CERTEMU_BACKUP_LOCATIONS_FILE "certbkxp.dat"

/* ---------------------------------------------------------------- types */

/* An emulated machine with a CA. Opaque; create with certemu_ca_create. */
typedef struct certemu_ca certemu_ca;

/* Most records at creation, and most certificates per certemu_ca_issue call. */
#define CERTEMU_MAX_RECORDS 100000000u
#define CERTEMU_MAX_ISSUE 1000000u

/* Options of certemu_ca_create. Fill with certemu_options_init, then change fields. */
typedef struct certemu_options {
    uint32_t size;         /* sizeof(certemu_options); other values get E_INVALIDARG */
    uint32_t records;      /* certificates at install time (default 16) */
    uint64_t seed;         /* seed of all generated content (default 1) */
    const char *ca_name;   /* CA common name, UTF-8; NULL = "Emu Issuing CA" */
    uint64_t edb_size;     /* virtual size of the .edb in bytes; 0 = its real size */
    uint32_t log_capacity; /* transactions per log generation (default 64, >= 1) */
    uint32_t reserved;     /* must be 0 */
} certemu_options;

/* ---------------------------------------------------------------- functions */

/* Fills *opts with the defaults. */
HRESULT certemu_options_init(certemu_options *opts);

/* Creates a machine named server_name (UTF-8 NetBIOS name; NULL = a name unique in the
 * process) with a running CA, and registers the name for the certbcli functions.
 * opts NULL = defaults. A name in use: 0x800700B7. */
HRESULT certemu_ca_create(const char *server_name, const certemu_options *opts,
                          certemu_ca **out);

/* Unregisters the machine and deletes its disk. Handles of its sessions turn stale
 * (E_HANDLE). NULL: S_FALSE. Destroyed twice: E_HANDLE. */
HRESULT certemu_ca_destroy(certemu_ca *ca);

/* The server name, UTF-8 / UTF-16, owned by the CA (valid until certemu_ca_destroy). */
HRESULT certemu_ca_server_name(const certemu_ca *ca, const char **name);
HRESULT certemu_ca_server_name_w(const certemu_ca *ca, const WCHAR **name);

/* Issues n certificates (each a logged transaction; the CA must be running). */
HRESULT certemu_ca_issue(certemu_ca *ca, uint32_t n);

/* Revokes the certificate with this request id (ids start at 1). */
HRESULT certemu_ca_revoke(certemu_ca *ca, uint32_t request_id);

/* Stops the service cleanly (open backup sessions are disconnected). */
HRESULT certemu_ca_stop(certemu_ca *ca);

/* Stops the service as a crash would; the next start replays the logs. */
HRESULT certemu_ca_crash(certemu_ca *ca);

/* Starts the service and runs recovery (hard recovery of a registered restore, else
 * soft recovery). Returns the recovery's HRESULT: S_OK, or the ESE code of the check
 * that refused the files; the outcome also shows in the report as "last_start".
 * A restore registered without CertSrvRestoreRegisterComplete holds the start:
 * CERTEMU_E_SERVER_SUSPENDED, and the service stays "suspended" (IsServerOnline gives
 * FALSE, requests CERTEMU_E_SERVER_SUSPENDED) until the registration is completed and
 * the service restarted (certemu_ca_stop or CSCONTROL_SHUTDOWN, then this).
 * A hard recovery whose restored logs end before the end of their backup set succeeds;
 * "last_start" then has "data_loss", and the conformance report a CR04 violation. */
HRESULT certemu_ca_start(certemu_ca *ca);

/* Deletes the CA's database, log and checkpoint files (service stopped): a disk loss. */
HRESULT certemu_ca_wipe_files(certemu_ca *ca);

/* The host path of a Windows path of the machine (C:\... or \\host\C$\...), UTF-8.
 * Free *out with certemu_free_string. Paths leaving the machine are refused. */
HRESULT certemu_ca_host_path(const certemu_ca *ca, const char *windows_path, char **out);

/* The caller identity: each argument is a BOOL. Default: TRUE, TRUE, TRUE, FALSE. */
HRESULT certemu_ca_set_identity(certemu_ca *ca, BOOL backup_privilege, BOOL restore_privilege,
                                BOOL local_admin, BOOL remote);

/* InterfaceFlags (IF_*; default IF_DEFAULT). */
HRESULT certemu_ca_set_interface_flags(certemu_ca *ca, uint32_t flags);

/* A JSON object describing the CA; free *json with certemu_free_string. Members:
 *   "server_name", "dns_name", "ca_name", "root"                    strings
 *   "service"                       "running" | "stopped" | "suspended"
 *   "record_count", "revoked_count", "last_request_id"             numbers
 *   "sessions_open", "outstanding_buffers", "calls"                 numbers
 *   "backup_in_progress", "restore_marker_present"                 booleans
 *   "log_generations"               numbered generations on disk, e.g. [1,2,3]
 *   "current_generation", "current_position",
 *   "checkpoint_generation", "checkpoint_position"                  numbers
 *   "last_full_backup", "last_incremental_backup"   null | {"high_gen":n,"at":t}
 *   "last_recovery"                 null | virtual time
 *   "restore_marker"                null | {"pending":b,"gen_low":n,"gen_high":n,
 *                                   "through_file":b,"restore_map_count":n,"status":null|hr}
 *   "interface_flags"               number
 *   "identity"                      {"backup_privilege":b,"restore_privilege":b,
 *                                    "local_admin":b,"remote":b}
 *   "last_start"                    null | {"hr":n[,"hard":b,"replayed_generations":[...],
 *                                   "transactions":n,"torn_tail":b
 *                                   [,"data_loss":{"missing_from":n,"missing_through":n|null,
 *                                   "lost_transactions":n|null,"backup":null|{"kind":s,
 *                                   "low_gen":n,"high_gen":n,"transactions":n}}]]}
 *   "conformance"                   the conformance report (docs/FILE-FORMATS.md 11.2)
 * The text has no whitespace between tokens; docs/FILE-FORMATS.md 11.3 has the member
 * order. In server mode the same members come from the server. */
HRESULT certemu_ca_report(const certemu_ca *ca, char **json);

/* Installs a fault schedule given as JSON (see the README, "The bad days"):
 * {"seed": 1, "faults": [{"kind": "fail", "function": "CertSrvBackupRead", "nth": 2,
 *                          "hr": "RPC_S_CALL_FAILED"}]}
 * A schedule that does not parse gets E_INVALIDARG and changes nothing. The report's
 * "conformance"."unfired_faults" lists planned faults that never fired. */
HRESULT certemu_ca_set_faults(certemu_ca *ca, const char *json);

/* The CA's call trace, one JSON object per line. Free with certemu_free_string. */
HRESULT certemu_ca_trace(const certemu_ca *ca, char **jsonl);

/* Frees a string returned through a char ** of this API. NULL: S_FALSE. A pointer not
 * returned by this API, or already freed, is left alone: E_INVALIDARG. */
HRESULT certemu_free_string(char *s);

/* The explanation of the last failing call (certbcli or certemu) on this thread, as
 * "0x80004003 E_POINTER: ..."; free with certemu_free_string. S_FALSE and NULL if no
 * call failed on this thread yet. Does not change the last error itself. */
HRESULT certemu_last_error(char **msg);

#ifdef __cplusplus
}
#endif

#endif /* CERTADM_EMU_CERTEMU_H */
