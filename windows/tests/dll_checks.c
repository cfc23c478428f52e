/*
 * dll_checks.exe SERVER: checks of certadm.dll (windows/certadm) beyond the documented
 * procedures, linked against the DLL through include/certbcli.h (dllimport, __stdcall):
 *
 *   - pointer and string checks stay local: E_POINTER, E_HANDLE, E_INVALIDARG;
 *   - a thread is a client: a handle of one thread is E_HANDLE on another, and a second
 *     backup from another thread is refused while one runs;
 *   - a list received on a thread that has ended is freed on another thread;
 *   - a read with a buffer larger than 4 MiB (split into remote reads) returns the file.
 *
 * Build: x86_64-w64-mingw32-gcc -std=c11 -municode -I include -o dll_checks.exe \
 *            windows/tests/dll_checks.c certadm.dll
 * Exit status: the number of failed checks (0 = all passed).
 */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "certbcli.h"

static int g_failures = 0;
static const WCHAR *g_server;

#define CHECK_HR(want, expr)                                                                 \
    do {                                                                                     \
        HRESULT got_ = (expr);                                                               \
        if (got_ != (HRESULT)(want)) {                                                       \
            fprintf(stderr, "FAIL line %d: %s = 0x%08lX, want 0x%08lX\n", __LINE__, #expr,    \
                    (unsigned long)(DWORD)got_, (unsigned long)(DWORD)(want));               \
            g_failures++;                                                                    \
        }                                                                                    \
    } while (0)

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "FAIL line %d: %s\n", __LINE__, #cond);                         \
            g_failures++;                                                                    \
        }                                                                                    \
    } while (0)

/* ------------------------------------------------------------------ threads */

static WCHAR *g_thread_list;
static DWORD g_thread_cb;
static HCSBC g_main_hbc;

static DWORD WINAPI list_then_exit(LPVOID arg)
{
    (void)arg;
    HCSBC hbc = NULL;
    CHECK_HR(S_OK, CertSrvBackupPrepare(g_server, 0, CSBACKUP_TYPE_FULL, &hbc));
    CHECK_HR(S_OK, CertSrvBackupGetBackupLogs(hbc, &g_thread_list, &g_thread_cb));
    CHECK_HR(S_OK, CertSrvBackupEnd(hbc));
    return 0; /* the thread's connection closes with it */
}

static DWORD WINAPI foreign(LPVOID arg)
{
    (void)arg;
    /* Another thread is another client: the main thread's handle is not ours... */
    CHECK_HR(E_HANDLE, CertSrvBackupEnd(g_main_hbc));
    /* ...and its backup is running. */
    HCSBC hbc = NULL;
    HRESULT hr = CertSrvBackupPrepare(g_server, 0, CSBACKUP_TYPE_FULL, &hbc);
    CHECK(FAILED(hr) && hbc == NULL);
    printf("second backup from another thread: 0x%08lX\n", (unsigned long)(DWORD)hr);
    return 0;
}

static void run_thread(LPTHREAD_START_ROUTINE f)
{
    HANDLE t = CreateThread(NULL, 0, f, NULL, 0, NULL);
    CHECK(t != NULL);
    if (t != NULL) {
        WaitForSingleObject(t, INFINITE);
        CloseHandle(t);
    }
}

int wmain(int argc, wchar_t **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: dll_checks.exe SERVER\n");
        return 100;
    }
    g_server = argv[1];
    BOOL online = 7;

    /* Local checks: nothing reaches the server. */
    CHECK_HR(E_POINTER, CertSrvIsServerOnline(NULL, &online));
    CHECK(online == FALSE); /* out-parameters are cleared on entry */
    CHECK_HR(E_POINTER, CertSrvIsServerOnline(g_server, NULL));
    CHECK_HR(E_POINTER, CertSrvBackupPrepare(g_server, 0, CSBACKUP_TYPE_FULL, NULL));
    CHECK_HR(E_HANDLE, CertSrvBackupEnd(NULL));
    CHECK_HR(E_HANDLE, CertSrvBackupClose(NULL));
    CHECK_HR(E_HANDLE, CertSrvRestoreEnd(NULL));
    WCHAR *l = (WCHAR *)1;
    DWORD cb = 7;
    CHECK_HR(E_HANDLE, CertSrvBackupGetBackupLogs(NULL, &l, &cb));
    CHECK(l == NULL && cb == 0);
    CHECK_HR(E_POINTER, CertSrvBackupGetBackupLogs((HCSBC)1, NULL, &cb));
    const WCHAR bad[] = {L'C', 0xD800, L'A', 0};
    CHECK_HR(E_INVALIDARG, CertSrvIsServerOnline(bad, &online));
    CHECK_HR(E_INVALIDARG, CertSrvRestoreRegister(NULL, NULL, NULL, NULL, -1, NULL, 1, 1));
    CHECK_HR(E_POINTER, CertSrvRestoreRegister(NULL, NULL, NULL, NULL, 1, NULL, 1, 1));
    DWORD cb_out = 9;
    BYTE *pb_out = (BYTE *)1;
    CertSrvServerControl(bad, CSCONTROL_SHUTDOWN, &cb_out, &pb_out);
    CHECK(cb_out == 0 && pb_out == NULL);
    CertSrvBackupFree(NULL); /* a no-op */

    CHECK_HR(S_OK, CertSrvIsServerOnline(g_server, &online));
    CHECK(online == TRUE);

    /* A list of a thread that has ended, freed here. */
    run_thread(list_then_exit);
    CHECK(g_thread_list != NULL && g_thread_cb >= 2);
    CertSrvBackupFree(g_thread_list);

    /* A handle is bound to its thread's connection. */
    CHECK_HR(S_OK, CertSrvBackupPrepare(g_server, 0, CSBACKUP_TYPE_FULL, &g_main_hbc));
    run_thread(foreign);

    /* A read larger than 4 MiB. */
    WCHAR *dbs = NULL;
    CHECK_HR(S_OK, CertSrvBackupGetDatabaseNames(g_main_hbc, &dbs, &cb));
    if (dbs != NULL && dbs[0] != 0) {
        LARGE_INTEGER size;
        size.QuadPart = -1;
        CHECK_HR(S_OK, CertSrvBackupOpenFile(g_main_hbc, dbs + 1, 0, &size));
        DWORD big = 5u * 1024u * 1024u;
        unsigned char *buf = (unsigned char *)malloc(big);
        DWORD got = 0;
        CHECK_HR(S_OK, CertSrvBackupRead(g_main_hbc, buf, big, &got));
        CHECK((long long)got == size.QuadPart);
        CHECK_HR(S_OK, CertSrvBackupRead(g_main_hbc, buf, big, &got));
        CHECK(got == 0);
        CHECK_HR(E_POINTER, CertSrvBackupRead(g_main_hbc, NULL, big, &got));
        CHECK_HR(S_OK, CertSrvBackupClose(g_main_hbc));
        free(buf);
        printf("read %lld bytes of %ls in one call\n", (long long)size.QuadPart, dbs + 1);
    } else {
        CHECK(!"no database listed");
    }
    CHECK_HR(S_OK, CertSrvBackupEnd(g_main_hbc));
    CHECK_HR(E_HANDLE, CertSrvBackupEnd(g_main_hbc)); /* dead after End */
    CertSrvBackupFree(dbs); /* valid after End */

    printf("dll_checks: %d failure(s)\n", g_failures);
    return g_failures;
}
