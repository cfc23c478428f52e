/*
 * Robustness of the 18 certbcli exports against what a buggy C client passes:
 *   - NULL for every pointer parameter (required: E_POINTER, or E_HANDLE for a handle;
 *     optional: accepted), with every out-parameter left defined (NULL / 0);
 *   - ended, destroyed, mutated and forged handles (E_HANDLE), contexts of the wrong kind
 *     (E_UNEXPECTED);
 *   - CertSrvBackupFree twice, on foreign pointers, inside a live list: ignored (the
 *     live lists stay intact and are counted correctly);
 *   - strings that are not UTF-16 or never end; huge crstmap; huge genHigh (accepted by
 *     the registration, refused by the recovery with JET_errMissingRestoreLogFiles).
 * Nothing here may crash; valgrind checks that no call reads or writes out of bounds.
 * (A cbBuffer larger than the real buffer is undefined behaviour in C: not tested.)
 */
#include "common.h"

#define POISON_PTR ((void *)(uintptr_t)0x5A5A5A5A)

static void null_list_pointers(const char *name, HRESULT (*fn)(HCSBC, WCHAR **, DWORD *), HCSBC h)
{
    WCHAR *list = (WCHAR *)POISON_PTR;
    DWORD cb = 77;
    HRESULT hr = fn(h, &list, NULL);
    if (hr != E_POINTER || list != NULL) {
        fprintf(stderr, "%s(h, &list, NULL): 0x%08" PRIX32 ", list %p\n", name, (uint32_t)hr,
                (void *)list);
        g_failures++;
    }
    hr = fn(h, NULL, &cb);
    if (hr != E_POINTER || cb != 0) {
        fprintf(stderr, "%s(h, NULL, &cb): 0x%08" PRIX32 ", cb %lu\n", name, (uint32_t)hr,
                (unsigned long)cb);
        g_failures++;
    }
    EXPECT_HR(E_POINTER, fn(h, NULL, NULL));
    list = (WCHAR *)POISON_PTR;
    cb = 77;
    hr = fn(NULL, &list, &cb);
    if (hr != E_HANDLE || list != NULL || cb != 0) {
        fprintf(stderr, "%s(NULL, &list, &cb): 0x%08" PRIX32 "\n", name, (uint32_t)hr);
        g_failures++;
    }
}

/* Every handle-taking function with `h`; all must return `want` (lists: NULL / 0). */
static void all_handle_calls(HCSBC h, HRESULT want, const char *what)
{
    WCHAR *list = (WCHAR *)POISON_PTR;
    DWORD cb = 5;
    LARGE_INTEGER size;
    unsigned char buf[16];
    DWORD got = 9;
    int before = g_failures;
    EXPECT_HR(want, CertSrvBackupGetDatabaseNamesW(h, &list, &cb));
    EXPECT(list == NULL && cb == 0);
    EXPECT_HR(want, CertSrvBackupGetDynamicFileListW(h, &list, &cb));
    EXPECT_HR(want, CertSrvBackupGetBackupLogsW(h, &list, &cb));
    EXPECT_HR(want, CertSrvRestoreGetDatabaseLocationsW(h, &list, &cb));
    size.QuadPart = 3;
    EXPECT_HR(want, CertSrvBackupOpenFileW(h, u"\\\\x\\C$\\a.edb", 0, &size));
    EXPECT(size.QuadPart == 0);
    EXPECT_HR(want, CertSrvBackupRead(h, buf, sizeof buf, &got));
    EXPECT(got == 0);
    EXPECT_HR(want, CertSrvBackupClose(h));
    EXPECT_HR(want, CertSrvBackupTruncateLogs(h));
    EXPECT_HR(want, CertSrvBackupEnd(h));
    EXPECT_HR(want, CertSrvRestoreRegisterComplete(h, S_OK));
    EXPECT_HR(want, CertSrvRestoreEnd(h));
    if (g_failures != before) {
        fprintf(stderr, "  ... with %s handle %p\n", what, h);
    }
}

int main(void)
{
    const WCHAR *server;
    certemu_ca *ca = make_ca(10, 4, &server);
    HCSBC h = NULL;
    BOOL online = 7;

    /* ---- NULL for every pointer parameter ---- */
    EXPECT_HR(E_POINTER, CertSrvIsServerOnlineW(NULL, &online));
    EXPECT(online == FALSE);
    EXPECT_HR(E_POINTER, CertSrvIsServerOnlineW(server, NULL));
    EXPECT_HR(E_POINTER, CertSrvIsServerOnlineW(NULL, NULL));

    h = POISON_PTR;
    EXPECT_HR(E_POINTER, CertSrvBackupPrepareW(NULL, 0, CSBACKUP_TYPE_FULL, &h));
    EXPECT(h == NULL);
    EXPECT_HR(E_POINTER, CertSrvBackupPrepareW(server, 0, CSBACKUP_TYPE_FULL, NULL));
    EXPECT(report_num(ca, "sessions_open") == 0);

    REQUIRE_OK(CertSrvBackupPrepareW(server, 0, CSBACKUP_TYPE_FULL, &h));
    null_list_pointers("CertSrvBackupGetDatabaseNamesW", CertSrvBackupGetDatabaseNamesW, h);
    null_list_pointers("CertSrvBackupGetDynamicFileListW", CertSrvBackupGetDynamicFileListW, h);
    null_list_pointers("CertSrvBackupGetBackupLogsW", CertSrvBackupGetBackupLogsW, h);
    null_list_pointers("CertSrvRestoreGetDatabaseLocationsW", CertSrvRestoreGetDatabaseLocationsW, h);
    EXPECT(report_num(ca, "outstanding_buffers") == 0); /* nothing leaked by the failures */

    WCHAR *names = NULL;
    DWORD cb = 0;
    REQUIRE_OK(CertSrvBackupGetDatabaseNamesW(h, &names, &cb));
    LARGE_INTEGER size;
    size.QuadPart = 5;
    EXPECT_HR(E_POINTER, CertSrvBackupOpenFileW(h, NULL, 0, &size));
    EXPECT(size.QuadPart == 0);
    EXPECT_HR(E_POINTER, CertSrvBackupOpenFileW(h, names + 1, 0, NULL));
    EXPECT_HR(E_HANDLE, CertSrvBackupOpenFileW(NULL, names + 1, 0, &size));
    REQUIRE_OK(CertSrvBackupOpenFileW(h, names + 1, 0, &size)); /* the failures opened nothing */

    unsigned char buf[4096];
    DWORD got = 5;
    EXPECT_HR(E_POINTER, CertSrvBackupRead(h, NULL, sizeof buf, &got));
    EXPECT(got == 0);
    EXPECT_HR(E_POINTER, CertSrvBackupRead(h, buf, sizeof buf, NULL));
    EXPECT_HR(E_POINTER, CertSrvBackupRead(h, NULL, 0, NULL));
    EXPECT_HR(E_HANDLE, CertSrvBackupRead(NULL, buf, sizeof buf, &got));
    EXPECT_HR(E_HANDLE, CertSrvBackupClose(NULL));
    EXPECT_HR(E_HANDLE, CertSrvBackupTruncateLogs(NULL));
    EXPECT_HR(E_HANDLE, CertSrvBackupEnd(NULL));
    CertSrvBackupFree(NULL); /* no-op */
    /* The session survived every refused call: read the file to its end. */
    long long total = 0;
    do {
        REQUIRE_OK(CertSrvBackupRead(h, buf, sizeof buf, &got));
        total += got;
    } while (got == sizeof buf);
    EXPECT(total == size.QuadPart);
    EXPECT_OK(CertSrvBackupClose(h));
    EXPECT_OK(CertSrvBackupEnd(h));

    /* ---- handles: ended, mutated, forged, of another kind, of a destroyed CA ---- */
    all_handle_calls(h, E_HANDLE, "an ended");
    REQUIRE_OK(CertSrvBackupPrepareW(server, 0, CSBACKUP_TYPE_FULL, &h));
    uintptr_t raw = (uintptr_t)h;
    all_handle_calls((HCSBC)(raw ^ ((uintptr_t)1 << 40)), E_HANDLE, "a generation-mutated");
    all_handle_calls((HCSBC)(raw ^ ((uintptr_t)1 << 25)), E_HANDLE, "a slot-mutated");
    all_handle_calls((HCSBC)(raw ^ ((uintptr_t)1 << 2)), E_HANDLE, "a host-mutated");
    all_handle_calls((HCSBC)(uintptr_t)2, E_HANDLE, "an untagged");
    all_handle_calls((HCSBC)(uintptr_t)1, E_HANDLE, "a forged (1)");
    all_handle_calls((HCSBC)UINTPTR_MAX, E_HANDLE, "an all-ones");
    all_handle_calls((HCSBC)buf, E_HANDLE, "a stack pointer as");
    all_handle_calls((HCSBC)((uintptr_t)buf | 1), E_HANDLE, "an odd stack pointer as");
    int *heap = (int *)xmalloc(sizeof *heap);
    all_handle_calls((HCSBC)heap, E_HANDLE, "a heap pointer as");
    free(heap);
    EXPECT(report_num(ca, "sessions_open") == 1); /* the real session is untouched */
    EXPECT_OK(CertSrvBackupEnd(h));

    /* A restore context given to backup calls is out of sequence; a backup context
     * given to restore calls likewise. */
    HCSBC hr_ctx = NULL;
    REQUIRE_OK(CertSrvRestorePrepareW(server, CSRESTORE_TYPE_FULL, &hr_ctx));
    WCHAR *no_list = (WCHAR *)POISON_PTR;
    EXPECT_HR(E_UNEXPECTED, CertSrvBackupGetDatabaseNamesW(hr_ctx, &no_list, &cb));
    EXPECT(no_list == NULL);
    EXPECT_HR(E_UNEXPECTED, CertSrvBackupRead(hr_ctx, buf, sizeof buf, &got));
    EXPECT_HR(E_UNEXPECTED, CertSrvBackupEnd(hr_ctx));
    REQUIRE_OK(CertSrvBackupPrepareW(server, 0, CSBACKUP_TYPE_FULL, &h));
    EXPECT_HR(E_UNEXPECTED, CertSrvRestoreRegisterComplete(h, S_OK));
    EXPECT_HR(E_UNEXPECTED, CertSrvRestoreEnd(h));
    EXPECT_OK(CertSrvBackupEnd(h));

    /* A handle of a CA that was destroyed. */
    const WCHAR *server2;
    certemu_ca *ca2 = make_ca(2, 64, &server2);
    HCSBC h2 = NULL;
    REQUIRE_OK(CertSrvBackupPrepareW(server2, 0, CSBACKUP_TYPE_FULL, &h2));
    EXPECT_OK(certemu_ca_destroy(ca2));
    all_handle_calls(h2, E_HANDLE, "a destroyed CA's");

    /* ---- CertSrvBackupFree on what it must ignore ---- */
    WCHAR *logs = NULL;
    DWORD cb_logs = 0;
    REQUIRE_OK(CertSrvBackupPrepareW(server, 0, CSBACKUP_TYPE_FULL, &h));
    REQUIRE_OK(CertSrvBackupGetBackupLogsW(h, &logs, &cb_logs));
    EXPECT_OK(CertSrvBackupEnd(h));
    EXPECT(report_num(ca, "outstanding_buffers") == 2); /* names, logs */
    CertSrvBackupFree(names);
    CertSrvBackupFree(names); /* twice */
    char *msg = NULL;
    EXPECT_OK(certemu_last_error(&msg));
    EXPECT(msg != NULL && strstr(msg, "E_INVALIDARG") != NULL && strstr(msg, "freed") != NULL);
    certemu_free_string(msg);
    void *foreign = xmalloc(64);
    CertSrvBackupFree(foreign); /* the caller's own memory: left alone */
    free(foreign);              /* ... and still the caller's to free */
    CertSrvBackupFree(buf);     /* the stack */
    CertSrvBackupFree(logs + 1);  /* inside a live list */
    CertSrvBackupFree(h);       /* a handle is not a buffer */
    CertSrvBackupFree((void *)(uintptr_t)1);
    CertSrvBackupFree((void *)UINTPTR_MAX);
    EXPECT(report_num(ca, "outstanding_buffers") == 1);
    EXPECT(logs[0] == CSBFT_LOG && cb_logs == list_bytes(logs)); /* intact */
    CertSrvBackupFree(logs);
    EXPECT(report_num(ca, "outstanding_buffers") == 0);

    /* ---- strings ---- */
    static const WCHAR lone_surrogate[] = {'E', 'M', 'U', 0xD800, 0};
    EXPECT_HR(E_INVALIDARG, CertSrvIsServerOnlineW(lone_surrogate, &online));
    EXPECT_HR(E_INVALIDARG, CertSrvBackupPrepareW(lone_surrogate, 0, CSBACKUP_TYPE_FULL, &h));
    EXPECT(h == NULL);
    /* Longer than the 32767-character limit: refused without reading past it. */
    size_t big = 40000;
    WCHAR *endless = (WCHAR *)xmalloc((big + 1) * sizeof(WCHAR));
    for (size_t i = 0; i < big; i++) {
        endless[i] = 'A';
    }
    endless[big] = 0;
    EXPECT_HR(E_INVALIDARG, CertSrvIsServerOnlineW(endless, &online));
    EXPECT_HR(E_INVALIDARG, CertSrvRestorePrepareW(endless, 0, &h));
    EXPECT_HR(E_INVALIDARG, CertSrvServerControlW(endless, CSCONTROL_SHUTDOWN, NULL, NULL));
    free(endless);
    EXPECT_HR(CERTEMU_E_RPC_SERVER_UNAVAILABLE, CertSrvIsServerOnlineW(u"", &online));

    /* ---- ServerControl: the server is required, the outputs optional ---- */
    DWORD cbOut = 3;
    BYTE *pbOut = (BYTE *)POISON_PTR;
    EXPECT_HR(E_POINTER, CertSrvServerControlW(NULL, CSCONTROL_SHUTDOWN, &cbOut, &pbOut));
    EXPECT(cbOut == 0 && pbOut == NULL);
    EXPECT_OK(CertSrvServerControlW(server, CSCONTROL_SUSPEND, NULL, NULL));

    /* ---- restore registration ---- */
    EXPECT_HR(E_POINTER, CertSrvRestorePrepareW(NULL, CSRESTORE_TYPE_FULL, &h));
    EXPECT_HR(E_POINTER, CertSrvRestorePrepareW(server, CSRESTORE_TYPE_FULL, NULL));
    char *dir = scratch_dir("robustness_certbcli");
    REQUIRE_OK(backup_set(server, dir, 1, 1));
    ULONG low = 0, high = 0;
    log_range(dir, &low, &high);
    WCHAR *locs = NULL;
    REQUIRE_OK(CertSrvRestoreGetDatabaseLocationsW(hr_ctx, &locs, &cb));
    WCHAR *db = (WCHAR *)list_find(locs, CSBFT_CERTSERVER_DATABASE) + 1;
    const WCHAR *logdir = list_find(locs, CSBFT_LOG_DIR) + 1;
    const WCHAR *sysdir = list_find(locs, CSBFT_CHECKPOINT_DIR) + 1;
    CSEDB_RSTMAPW map[1] = {{db, db}};
    CSEDB_RSTMAPW null_old[1] = {{NULL, db}};
    CSEDB_RSTMAPW null_new[1] = {{db, NULL}};
    REQUIRE_OK(certemu_ca_stop(ca));
    REQUIRE(restore_files(ca, dir) == 0);
    typedef HRESULT(FNREG)(HCSBC, WCHAR const *, WCHAR const *, CSEDB_RSTMAPW *, LONG,
                           WCHAR const *, ULONG, ULONG);
    FNREG *regs[2] = {CertSrvRestoreRegisterW, CertSrvRestoreRegisterThroughFile};
    for (int i = 0; i < 2; i++) {
        FNREG *reg = regs[i];
        EXPECT_HR(E_HANDLE, reg(NULL, sysdir, logdir, map, 1, logdir, low, high));
        EXPECT_HR(E_POINTER, reg(hr_ctx, sysdir, logdir, NULL, 1, logdir, low, high));
        EXPECT_HR(E_POINTER, reg(hr_ctx, sysdir, logdir, null_old, 1, logdir, low, high));
        EXPECT_HR(E_POINTER, reg(hr_ctx, sysdir, logdir, null_new, 1, logdir, low, high));
        /* crstmap: negative, above the limit, huge (never read beyond the one entry). */
        EXPECT_HR(E_INVALIDARG, reg(hr_ctx, sysdir, logdir, map, -1, logdir, low, high));
        EXPECT_HR(E_INVALIDARG, reg(hr_ctx, sysdir, logdir, map, 65, logdir, low, high));
        EXPECT_HR(E_INVALIDARG, reg(hr_ctx, sysdir, logdir, map, 0x7FFFFFFF, logdir, low, high));
        EXPECT_HR(E_INVALIDARG, reg(hr_ctx, sysdir, logdir, map, (LONG)0x80000000u, logdir, low, high));
        EXPECT_HR(E_INVALIDARG, reg(hr_ctx, sysdir, logdir, map, 1, logdir, 0, 0));
        EXPECT_HR(E_INVALIDARG, reg(hr_ctx, sysdir, logdir, map, 1, logdir, 0xFFFFFFFFu, 1));
        EXPECT_HR(E_INVALIDARG, reg(hr_ctx, sysdir, logdir, (CSEDB_RSTMAPW *)lone_surrogate, 0,
                                    lone_surrogate, low, high));
        EXPECT_REPORT(ca, "restore_marker_present", i == 0 ? "false" : "true");
        /* The three paths are optional: NULL is accepted. */
        EXPECT_OK(reg(hr_ctx, NULL, NULL, map, 1, NULL, low, high));
        EXPECT_OK(CertSrvRestoreRegisterComplete(hr_ctx, S_OK));
    }
    EXPECT_HR(E_HANDLE, CertSrvRestoreRegisterComplete(NULL, S_OK));
    EXPECT_HR(E_HANDLE, CertSrvRestoreEnd(NULL));

    /* A huge genHigh is a registration like any other; the recovery at start refuses it
     * because the chain does not reach it, and leaves the files alone. */
    EXPECT_OK(CertSrvRestoreRegisterW(hr_ctx, sysdir, logdir, map, 1, logdir, low, 0xFFFFFFFFu));
    EXPECT_OK(CertSrvRestoreRegisterComplete(hr_ctx, S_OK));
    EXPECT(report_num(ca, "gen_high") == 0xFFFFFFFFll);
    EXPECT_HR(CERTEMU_E_JET_MISSING_RESTORE_LOG_FILES, certemu_ca_start(ca));
    EXPECT_REPORT(ca, "service", "\"stopped\"");
    /* Registered again with the real range, it recovers. */
    EXPECT_OK(CertSrvRestoreRegisterW(hr_ctx, sysdir, logdir, map, 1, logdir, low, high));
    EXPECT_OK(CertSrvRestoreRegisterComplete(hr_ctx, S_OK));
    EXPECT_OK(CertSrvRestoreEnd(hr_ctx));
    EXPECT_OK(certemu_ca_start(ca));
    EXPECT(report_num(ca, "record_count") == 10);

    CertSrvBackupFree(locs);
    EXPECT(report_num(ca, "outstanding_buffers") == 0);
    EXPECT(report_num(ca, "sessions_open") == 0);
    EXPECT_OK(certemu_ca_destroy(ca));
    rm_rf(dir);
    free(dir);
    return finish("robustness_certbcli");
}
