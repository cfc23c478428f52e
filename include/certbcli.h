/*
 * certbcli.h: the Certificate Services backup and restore client API (Certadm.dll),
 * for programs built against certadm-emu (libcertadm_emu.so) on Linux and other
 * non-Windows hosts.
 *
 * Written for certadm-emu from the project's API specification (certadm-api.md, sections
 * 1-5), which follows Microsoft's public reference pages and public headers. It is
 * source compatible with code written for the Windows SDK header: same function names,
 * FN* typedefs, generic macros, structure and constants. Only the base Windows types are
 * supplied here when <windows.h> is not available.
 *
 * Base types on non-Windows hosts:
 *   WCHAR    16-bit UTF-16 code unit: uint16_t in C, char16_t in C++ (so u"..."
 *            literals can be passed directly in both languages)
 *   HRESULT  int32_t     BOOL  int          BYTE  uint8_t
 *   DWORD    uint32_t    ULONG uint32_t     LONG  int32_t
 *   LARGE_INTEGER  a union of 8 bytes with QuadPart (int64_t) and u.LowPart/u.HighPart
 *   TRUE, FALSE    1, 0
 * Define CERTBCLI_NO_BASE_TYPES before including this header if your program already
 * defines these names (with the same widths).
 *
 * Calling convention: CERTBCLI_CALL is __stdcall on Windows and empty elsewhere.
 *
 * Type check: include this header a second time with _CERTBCLI_TYPECHECK defined (or
 * define it before the first inclusion) to declare one pfn<Function> variable per
 * function, initialised with that function through its FN typedef. A prototype that
 * differs from its typedef then fails to compile.
 */

#ifndef CERTADM_EMU_CERTBCLI_H
#define CERTADM_EMU_CERTBCLI_H

/* ---------------------------------------------------------------- base types */

#if defined(_WIN32)
#include <windows.h>
#elif !defined(CERTBCLI_NO_BASE_TYPES)
#include <stdint.h>

#ifndef CERTBCLI_BASE_TYPES_DEFINED
#define CERTBCLI_BASE_TYPES_DEFINED
#ifdef __cplusplus
typedef char16_t WCHAR;
#else
typedef uint16_t WCHAR;
#endif
typedef int32_t HRESULT;
typedef int BOOL;
typedef uint8_t BYTE;
typedef uint32_t DWORD;
typedef uint32_t ULONG;
typedef int32_t LONG;
typedef WCHAR *PWSTR;
typedef WCHAR const *PCWSTR;
#ifndef FALSE
#define FALSE 0
#endif
/* winerror.h basics, as windows.h provides them to Windows clients. */
#ifndef SUCCEEDED
#define SUCCEEDED(hr) (((HRESULT)(hr)) >= 0)
#endif
#ifndef FAILED
#define FAILED(hr) (((HRESULT)(hr)) < 0)
#endif
#ifndef S_OK
#define S_OK ((HRESULT)0)
#endif
#ifndef TRUE
#define TRUE 1
#endif

typedef union _LARGE_INTEGER {
#if !defined(__cplusplus) && defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
    struct {
        DWORD LowPart;
        LONG HighPart;
    };
#endif
    struct {
        DWORD LowPart;
        LONG HighPart;
    } u;
    int64_t QuadPart;
} LARGE_INTEGER;
#endif /* CERTBCLI_BASE_TYPES_DEFINED */
#endif /* base types */

/* ---------------------------------------------------------------- annotations */

#ifndef IN
#define IN
#endif
#ifndef OUT
#define OUT
#endif
#ifndef OPTIONAL
#define OPTIONAL
#endif
#ifndef VOID
#define VOID void
#endif
#ifndef RPC_STRING
#define RPC_STRING
#endif

#ifndef CERTBCLI_CALL
#if defined(_WIN32)
#define CERTBCLI_CALL __stdcall
#else
#define CERTBCLI_CALL
#endif
#endif

#ifndef CERTBCLI_API
#if defined(_WIN32) && !defined(_CERTBCLI_DEFINED)
#define CERTBCLI_API __declspec(dllimport) CERTBCLI_CALL
#else
#define CERTBCLI_API CERTBCLI_CALL
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- constants */

/* Annotations a backup or restore application may show. */
#define szBACKUPANNOTATION "Cert Server Backup Interface"
#define szRESTOREANNOTATION "Cert Server Restore Interface"
#if defined(_WIN32)
#define wszBACKUPANNOTATION L"Cert Server Backup Interface"
#define wszRESTOREANNOTATION L"Cert Server Restore Interface"
#else
#define wszBACKUPANNOTATION u"Cert Server Backup Interface"
#define wszRESTOREANNOTATION u"Cert Server Restore Interface"
#endif

/* dwBackupFlags of CertSrvBackupPrepareW. */
#define CSBACKUP_TYPE_FULL 0x00000001      /* database, logs and related files */
#define CSBACKUP_TYPE_LOGS_ONLY 0x00000002 /* log files only (incremental backup) */
#define CSBACKUP_TYPE_MASK 0x00000003      /* the valid flags */

/* CSBACKUP_TYPE_INCREMENTAL (0x4) is not defined: the SDK comments it out as "not yet
 * supported", and no header or binding defines it. */

/* A log number meaning "incremental backup disabled"; no function takes it. */
#define CSBACKUP_DISABLE_INCREMENTAL 0xffffffffU

/* dwRestoreFlags of CertSrvRestorePrepareW. 0 restores an incremental set. */
#define CSRESTORE_TYPE_FULL 0x00000001    /* database, logs and related files */
#define CSRESTORE_TYPE_ONLINE 0x00000002  /* not supported */
#define CSRESTORE_TYPE_CATCHUP 0x00000004 /* not supported */
#define CSRESTORE_TYPE_MASK 0x00000005    /* the valid flags (ONLINE is not one) */

/* The type character in front of each entry of a file list ("wszz" list). */
typedef WCHAR CSBFT;

#define CSBFT_DIRECTORY 0x80          /* the entry is a directory */
#define CSBFT_DATABASE_DIRECTORY 0x40 /* the file belongs in the database directory */
#define CSBFT_LOG_DIRECTORY 0x20      /* the file belongs in the log directory */

#define CSBFT_LOG ((CSBFT)(0x01 | CSBFT_LOG_DIRECTORY))                    /* '!'  */
#define CSBFT_LOG_DIR ((CSBFT)(0x02 | CSBFT_DIRECTORY))                    /* 0x82 */
#define CSBFT_CHECKPOINT_DIR ((CSBFT)(0x03 | CSBFT_DIRECTORY))             /* 0x83 */
#define CSBFT_CERTSERVER_DATABASE ((CSBFT)(0x04 | CSBFT_DATABASE_DIRECTORY)) /* 'D' */
#define CSBFT_PATCH_FILE ((CSBFT)(0x05 | CSBFT_LOG_DIRECTORY))             /* '%'  */
#define CSBFT_UNKNOWN ((CSBFT)0x0f)

/* dwControlFlags of CertSrvServerControlW. */
#define CSCONTROL_SHUTDOWN 0x000000001
#define CSCONTROL_SUSPEND 0x000000002
#define CSCONTROL_RESTART 0x000000003

/* ---------------------------------------------------------------- types */

/* A backup or restore context handle. */
typedef void *HCSBC;

/* One entry of a restore map. */
#ifndef CSEDB_RSTMAP
typedef struct tagCSEDB_RSTMAPW {
    RPC_STRING WCHAR *pwszDatabaseName;    /* the database as it was backed up */
    RPC_STRING WCHAR *pwszNewDatabaseName; /* the name to restore it as */
} CSEDB_RSTMAPW;

#define CSEDB_RSTMAP CSEDB_RSTMAPW
#endif

/* ---------------------------------------------------------------- generic names */

#define CertSrvIsServerOnline CertSrvIsServerOnlineW
#define CertSrvBackupPrepare CertSrvBackupPrepareW
#define CertSrvBackupGetDatabaseNames CertSrvBackupGetDatabaseNamesW
#define CertSrvBackupGetDynamicFileList CertSrvBackupGetDynamicFileListW
#define CertSrvBackupOpenFile CertSrvBackupOpenFileW
#define CertSrvBackupGetBackupLogs CertSrvBackupGetBackupLogsW
#define CertSrvRestoreGetDatabaseLocations CertSrvRestoreGetDatabaseLocationsW
#define CertSrvRestorePrepare CertSrvRestorePrepareW
#define CertSrvRestoreRegister CertSrvRestoreRegisterW
#define CertSrvServerControl CertSrvServerControlW

/* ---------------------------------------------------------------- functions */

/* Is Certificate Services running? *pfServerOnline: TRUE when running, FALSE when
 * suspended; fails when the service is stopped. */
typedef HRESULT(CERTBCLI_CALL FNCERTSRVISSERVERONLINEW)(
    IN WCHAR const *pwszServerName,
    OUT BOOL *pfServerOnline);

HRESULT CERTBCLI_API CertSrvIsServerOnlineW(
    IN WCHAR const *pwszServerName,
    OUT BOOL *pfServerOnline);

/* Starts a backup session; end it with CertSrvBackupEnd. grbitJet must be 0. */
typedef HRESULT(CERTBCLI_CALL FNCERTSRVBACKUPPREPAREW)(
    IN WCHAR const *pwszServerName,
    IN ULONG grbitJet,
    IN ULONG dwBackupFlags, /* CSBACKUP_TYPE_* */
    OUT HCSBC *phbc);

HRESULT CERTBCLI_API CertSrvBackupPrepareW(
    IN WCHAR const *pwszServerName,
    IN ULONG grbitJet,
    IN ULONG dwBackupFlags, /* CSBACKUP_TYPE_* */
    OUT HCSBC *phbc);

/* The database files to back up: 'D' + UNC name each; free with CertSrvBackupFree. */
typedef HRESULT(CERTBCLI_CALL FNCERTSRVBACKUPGETDATABASENAMESW)(
    IN HCSBC hbc,
    OUT WCHAR **ppwszzAttachmentInformation,
    OUT DWORD *pcbSize);

HRESULT CERTBCLI_API CertSrvBackupGetDatabaseNamesW(
    IN HCSBC hbc,
    OUT WCHAR **ppwszzAttachmentInformation,
    OUT DWORD *pcbSize);

/* Files to back up by other means (CRLs...): plain UNC names; free with CertSrvBackupFree. */
typedef HRESULT(CERTBCLI_CALL FNCERTSRVBACKUPGETDYNAMICFILELISTW)(
    IN HCSBC hbc,
    OUT WCHAR **ppwszzFileList,
    OUT DWORD *pcbSize);

HRESULT CERTBCLI_API CertSrvBackupGetDynamicFileListW(
    IN HCSBC hbc,
    OUT WCHAR **ppwszzFileList,
    OUT DWORD *pcbSize);

/* Opens a listed file (name without its CSBFT character) for CertSrvBackupRead. */
typedef HRESULT(CERTBCLI_CALL FNCERTSRVBACKUPOPENFILEW)(
    IN HCSBC hbc,
    IN WCHAR const *pwszAttachmentName,
    IN DWORD cbReadHintSize,
    OUT LARGE_INTEGER *pliFileSize);

HRESULT CERTBCLI_API CertSrvBackupOpenFileW(
    IN HCSBC hbc,
    IN WCHAR const *pwszAttachmentName,
    IN DWORD cbReadHintSize,
    OUT LARGE_INTEGER *pliFileSize);

/* Reads the open file sequentially; *pcbRead < cbBuffer (or 0) at end of file. */
typedef HRESULT(CERTBCLI_CALL FNCERTSRVBACKUPREAD)(
    IN HCSBC hbc,
    OUT VOID *pvBuffer,
    IN DWORD cbBuffer,
    OUT DWORD *pcbRead);

HRESULT CERTBCLI_API CertSrvBackupRead(
    IN HCSBC hbc,
    OUT VOID *pvBuffer,
    IN DWORD cbBuffer,
    OUT DWORD *pcbRead);

/* Closes the file opened by CertSrvBackupOpenFile. */
typedef HRESULT(CERTBCLI_CALL FNCERTSRVBACKUPCLOSE)(
    IN HCSBC hbc);

HRESULT CERTBCLI_API CertSrvBackupClose(
    IN HCSBC hbc);

/* The log files to back up: '!' + UNC name each; free with CertSrvBackupFree. */
typedef HRESULT(CERTBCLI_CALL FNCERTSRVBACKUPGETBACKUPLOGSW)(
    IN HCSBC hbc,
    OUT WCHAR **ppwszzBackupLogFiles,
    OUT DWORD *pcbSize);

HRESULT CERTBCLI_API CertSrvBackupGetBackupLogsW(
    IN HCSBC hbc,
    OUT WCHAR **ppwszzBackupLogFiles,
    OUT DWORD *pcbSize);

/* Deletes the logs no longer needed, once every listed file was read to its end. */
typedef HRESULT(CERTBCLI_CALL FNCERTSRVBACKUPTRUNCATELOGS)(
    IN HCSBC hbc);

HRESULT CERTBCLI_API CertSrvBackupTruncateLogs(
    IN HCSBC hbc);

/* Ends a backup session; the handle is dead afterwards. */
typedef HRESULT(CERTBCLI_CALL FNCERTSRVBACKUPEND)(
    IN HCSBC hbc);

HRESULT CERTBCLI_API CertSrvBackupEnd(
    IN HCSBC hbc);

/* Frees a buffer returned by the list functions (valid after CertSrvBackupEnd too). */
typedef VOID(CERTBCLI_CALL FNCERTSRVBACKUPFREE)(
    IN VOID *pv);

VOID CERTBCLI_API CertSrvBackupFree(
    IN VOID *pv);

/* Where the database ('D'), the logs (0x82) and the checkpoint (0x83) live; with a
 * backup or a restore context; needs the service running. Free with CertSrvBackupFree. */
typedef HRESULT(CERTBCLI_CALL FNCERTSRVRESTOREGETDATABASELOCATIONSW)(
    IN HCSBC hbc,
    OUT WCHAR **ppwszzDatabaseLocationList,
    OUT DWORD *pcbSize);

HRESULT CERTBCLI_API CertSrvRestoreGetDatabaseLocationsW(
    IN HCSBC hbc,
    OUT WCHAR **ppwszzDatabaseLocationList,
    OUT DWORD *pcbSize);

/* Starts a restore session; end it with CertSrvRestoreEnd. */
typedef HRESULT(CERTBCLI_CALL FNCERTSRVRESTOREPREPAREW)(
    IN WCHAR const *pwszServerName,
    IN ULONG dwRestoreFlags, /* CSRESTORE_TYPE_* */
    OUT HCSBC *phbc);

HRESULT CERTBCLI_API CertSrvRestorePrepareW(
    IN WCHAR const *pwszServerName,
    IN ULONG dwRestoreFlags, /* CSRESTORE_TYPE_* */
    OUT HCSBC *phbc);

/* Registers a restored set for recovery at the next service start (local administrator).
 * genLow/genHigh: lowest/highest log generation restored (1 = edb00001.log). */
typedef HRESULT(CERTBCLI_CALL FNCERTSRVRESTOREREGISTERW)(
    OPTIONAL IN HCSBC hbc,
    OPTIONAL IN WCHAR const *pwszCheckPointFilePath,
    OPTIONAL IN WCHAR const *pwszLogPath,
    OPTIONAL IN CSEDB_RSTMAPW rgrstmap[],
    IN LONG crstmap,
    OPTIONAL IN WCHAR const *pwszBackupLogPath,
    IN ULONG genLow,
    IN ULONG genHigh);

HRESULT CERTBCLI_API CertSrvRestoreRegisterW(
    OPTIONAL IN HCSBC hbc,
    OPTIONAL IN WCHAR const *pwszCheckPointFilePath,
    OPTIONAL IN WCHAR const *pwszLogPath,
    OPTIONAL IN CSEDB_RSTMAPW rgrstmap[],
    IN LONG crstmap,
    OPTIONAL IN WCHAR const *pwszBackupLogPath,
    IN ULONG genLow,
    IN ULONG genHigh);

/* As CertSrvRestoreRegisterW, needing only the restore privilege. Exported under this
 * exact name (no W suffix), with no generic macro and no FN typedef. */
HRESULT CERTBCLI_API CertSrvRestoreRegisterThroughFile(
    IN HCSBC hbc,
    OPTIONAL IN WCHAR const *pwszCheckPointFilePath,
    OPTIONAL IN WCHAR const *pwszLogPath,
    OPTIONAL IN CSEDB_RSTMAPW rgrstmap[],
    IN LONG crstmap,
    OPTIONAL IN WCHAR const *pwszBackupLogPath,
    IN ULONG genLow,
    IN ULONG genHigh);

/* Completes a registration with S_OK, or with the failure the restore met. */
typedef HRESULT(CERTBCLI_CALL FNCERTSRVRESTOREREGISTERCOMPLETE)(
    OPTIONAL IN HCSBC hbc,
    IN HRESULT hrRestoreState);

HRESULT CERTBCLI_API CertSrvRestoreRegisterComplete(
    OPTIONAL IN HCSBC hbc,
    IN HRESULT hrRestoreState);

/* Ends a restore session; the handle is dead afterwards. */
typedef HRESULT(CERTBCLI_CALL FNCERTSRVRESTOREEND)(
    IN HCSBC hbc);

HRESULT CERTBCLI_API CertSrvRestoreEnd(
    IN HCSBC hbc);

/* CSCONTROL_SHUTDOWN stops Certificate Services. pcbOut and ppbOut may be NULL; nothing
 * is allocated (*ppbOut = NULL, *pcbOut = 0). */
typedef HRESULT(CERTBCLI_CALL FNCERTSRVSERVERCONTROLW)(
    IN WCHAR const *pwszServerName,
    IN DWORD dwControlFlags,
    OPTIONAL OUT DWORD *pcbOut,
    OPTIONAL OUT BYTE **ppbOut);

HRESULT CERTBCLI_API CertSrvServerControlW(
    IN WCHAR const *pwszServerName,
    IN DWORD dwControlFlags,
    OPTIONAL OUT DWORD *pcbOut,
    OPTIONAL OUT BYTE **ppbOut);

#ifdef __cplusplus
}
#endif

#endif /* CERTADM_EMU_CERTBCLI_H */

/* ---------------------------------------------------------------- type check */

#if defined(_CERTBCLI_TYPECHECK) && !defined(CERTADM_EMU_CERTBCLI_TYPECHECK_DONE)
#define CERTADM_EMU_CERTBCLI_TYPECHECK_DONE

/* Each initialiser converts a function to a pointer to its FN typedef: a mismatch is a
 * compile error in C++ and a constraint violation (an error with -Werror or
 * -pedantic-errors) in C. In C11 the _Static_asserts below also fail hard. */
static FNCERTSRVISSERVERONLINEW *pfnCertSrvIsServerOnline = CertSrvIsServerOnline;
static FNCERTSRVBACKUPPREPAREW *pfnCertSrvBackupPrepare = CertSrvBackupPrepare;
static FNCERTSRVBACKUPGETDATABASENAMESW *pfnCertSrvBackupGetDatabaseNames =
    CertSrvBackupGetDatabaseNames;
static FNCERTSRVBACKUPGETDYNAMICFILELISTW *pfnCertSrvBackupGetDynamicFileList =
    CertSrvBackupGetDynamicFileList;
static FNCERTSRVBACKUPOPENFILEW *pfnCertSrvBackupOpenFile = CertSrvBackupOpenFile;
static FNCERTSRVBACKUPREAD *pfnCertSrvBackupRead = CertSrvBackupRead;
static FNCERTSRVBACKUPCLOSE *pfnCertSrvBackupClose = CertSrvBackupClose;
static FNCERTSRVBACKUPGETBACKUPLOGSW *pfnCertSrvBackupGetBackupLogs =
    CertSrvBackupGetBackupLogs;
static FNCERTSRVBACKUPTRUNCATELOGS *pfnCertSrvBackupTruncateLogs =
    CertSrvBackupTruncateLogs;
static FNCERTSRVBACKUPEND *pfnCertSrvBackupEnd = CertSrvBackupEnd;
static FNCERTSRVBACKUPFREE *pfnCertSrvBackupFree = CertSrvBackupFree;
static FNCERTSRVRESTOREGETDATABASELOCATIONSW *pfnCertSrvRestoreGetDatabaseLocations =
    CertSrvRestoreGetDatabaseLocations;
static FNCERTSRVRESTOREPREPAREW *pfnCertSrvRestorePrepare = CertSrvRestorePrepare;
static FNCERTSRVRESTOREREGISTERW *pfnCertSrvRestoreRegister = CertSrvRestoreRegister;
/* No typedef of its own: it has the parameter list of CertSrvRestoreRegisterW. */
static FNCERTSRVRESTOREREGISTERW *pfnCertSrvRestoreRegisterThroughFile =
    CertSrvRestoreRegisterThroughFile;
static FNCERTSRVRESTOREREGISTERCOMPLETE *pfnCertSrvRestoreRegisterComplete =
    CertSrvRestoreRegisterComplete;
static FNCERTSRVRESTOREEND *pfnCertSrvRestoreEnd = CertSrvRestoreEnd;
static FNCERTSRVSERVERCONTROLW *pfnCertSrvServerControl = CertSrvServerControl;

#if !defined(__cplusplus) && defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define CERTBCLI_TYPECHECK_(fn, type) \
    _Static_assert(_Generic(&fn, type *: 1, default: 0), #fn " does not match " #type)
CERTBCLI_TYPECHECK_(CertSrvIsServerOnlineW, FNCERTSRVISSERVERONLINEW);
CERTBCLI_TYPECHECK_(CertSrvBackupPrepareW, FNCERTSRVBACKUPPREPAREW);
CERTBCLI_TYPECHECK_(CertSrvBackupGetDatabaseNamesW, FNCERTSRVBACKUPGETDATABASENAMESW);
CERTBCLI_TYPECHECK_(CertSrvBackupGetDynamicFileListW, FNCERTSRVBACKUPGETDYNAMICFILELISTW);
CERTBCLI_TYPECHECK_(CertSrvBackupOpenFileW, FNCERTSRVBACKUPOPENFILEW);
CERTBCLI_TYPECHECK_(CertSrvBackupRead, FNCERTSRVBACKUPREAD);
CERTBCLI_TYPECHECK_(CertSrvBackupClose, FNCERTSRVBACKUPCLOSE);
CERTBCLI_TYPECHECK_(CertSrvBackupGetBackupLogsW, FNCERTSRVBACKUPGETBACKUPLOGSW);
CERTBCLI_TYPECHECK_(CertSrvBackupTruncateLogs, FNCERTSRVBACKUPTRUNCATELOGS);
CERTBCLI_TYPECHECK_(CertSrvBackupEnd, FNCERTSRVBACKUPEND);
CERTBCLI_TYPECHECK_(CertSrvBackupFree, FNCERTSRVBACKUPFREE);
CERTBCLI_TYPECHECK_(CertSrvRestoreGetDatabaseLocationsW, FNCERTSRVRESTOREGETDATABASELOCATIONSW);
CERTBCLI_TYPECHECK_(CertSrvRestorePrepareW, FNCERTSRVRESTOREPREPAREW);
CERTBCLI_TYPECHECK_(CertSrvRestoreRegisterW, FNCERTSRVRESTOREREGISTERW);
CERTBCLI_TYPECHECK_(CertSrvRestoreRegisterThroughFile, FNCERTSRVRESTOREREGISTERW);
CERTBCLI_TYPECHECK_(CertSrvRestoreRegisterComplete, FNCERTSRVRESTOREREGISTERCOMPLETE);
CERTBCLI_TYPECHECK_(CertSrvRestoreEnd, FNCERTSRVRESTOREEND);
CERTBCLI_TYPECHECK_(CertSrvServerControlW, FNCERTSRVSERVERCONTROLW);
#undef CERTBCLI_TYPECHECK_
#endif

/* Uses every pfn variable so -Wunused does not fire; never needs to be called. Returns
 * the number of functions resolved (18). */
static inline int certbcli_typecheck_count(void)
{
    return (pfnCertSrvIsServerOnline != 0) + (pfnCertSrvBackupPrepare != 0) +
           (pfnCertSrvBackupGetDatabaseNames != 0) + (pfnCertSrvBackupGetDynamicFileList != 0) +
           (pfnCertSrvBackupOpenFile != 0) + (pfnCertSrvBackupRead != 0) +
           (pfnCertSrvBackupClose != 0) + (pfnCertSrvBackupGetBackupLogs != 0) +
           (pfnCertSrvBackupTruncateLogs != 0) + (pfnCertSrvBackupEnd != 0) +
           (pfnCertSrvBackupFree != 0) + (pfnCertSrvRestoreGetDatabaseLocations != 0) +
           (pfnCertSrvRestorePrepare != 0) + (pfnCertSrvRestoreRegister != 0) +
           (pfnCertSrvRestoreRegisterThroughFile != 0) +
           (pfnCertSrvRestoreRegisterComplete != 0) + (pfnCertSrvRestoreEnd != 0) +
           (pfnCertSrvServerControl != 0);
}
#endif /* _CERTBCLI_TYPECHECK */
