/*
 * CertSrvBackupTruncateLogs, as in its reference page's example: hr = pfnTruncateLogs(
 * hCSBC) once every file from GetDatabaseNames and GetBackupLogs was secured (spec §5.9).
 * Truncating earlier "would make the backup unrestorable" and is refused.
 */
#include "common.h"

int main(void)
{
    const WCHAR *wszServer;
    certemu_ca *ca = make_ca(8, 2, &wszServer);
    FNCERTSRVBACKUPTRUNCATELOGS *pfnTruncateLogs = CertSrvBackupTruncateLogs;
    char *dir = scratch_dir("sample_truncate_logs");
    unsigned char *buf = (unsigned char *)xmalloc(READ_BUFFER_SIZE);
    REQUIRE_OK(certemu_ca_issue(ca, 9));
    /* A first full backup without truncation: old generations stay on disk. */
    char *first = path_join(dir, "first");
    REQUIRE_OK(backup_set(wszServer, first, 1, 0));
    REQUIRE_OK(certemu_ca_issue(ca, 6));
    char *json = report(ca);
    printf("before: %s\n", strstr(json, "\"log_generations\""));
    certemu_free_string(json);

    HCSBC hCSBC = NULL;
    REQUIRE_OK(CertSrvBackupPrepareW(wszServer, 0, CSBACKUP_TYPE_FULL, &hCSBC));
    /* Nothing listed yet. */
    EXPECT_HR(E_UNEXPECTED, pfnTruncateLogs(hCSBC));
    WCHAR *names = NULL, *logs = NULL;
    DWORD cb = 0;
    REQUIRE_OK(CertSrvBackupGetDatabaseNamesW(hCSBC, &names, &cb));
    REQUIRE_OK(CertSrvBackupGetBackupLogsW(hCSBC, &logs, &cb));
    /* Listed, not read. */
    EXPECT_HR(E_UNEXPECTED, pfnTruncateLogs(hCSBC));
    char *copy = path_join(dir, "second");
    REQUIRE(mkdir_p(copy) == 0);
    EXPECT(copy_listed_file(hCSBC, names + 1, copy, buf) > 0);
    EXPECT_HR(E_UNEXPECTED, pfnTruncateLogs(hCSBC)); /* the logs are still missing */
    ULONG low = 0xFFFFFFFF, high = 0;
    for (const WCHAR *p = logs; *p != 0; p += wlen(p) + 1) {
        EXPECT(copy_listed_file(hCSBC, p + 1, copy, buf) >= 0);
        char *u = utf8_from_w(p + 1);
        unsigned long g = 0;
        if (sscanf(win_basename(u), "edb%5lx.log", &g) == 1) {
            low = g < low ? (ULONG)g : low;
            high = g > high ? (ULONG)g : high;
        }
        free(u);
    }
    long long oldest_before = -1;
    json = report(ca);
    const char *gens = strstr(json, "\"log_generations\":[");
    if (gens != NULL) {
        oldest_before = strtoll(gens + strlen("\"log_generations\":["), NULL, 10);
    }
    certemu_free_string(json);
    EXPECT(oldest_before >= 1 && oldest_before < (long long)low);

    /* The documented pattern. */
    HRESULT hr = pfnTruncateLogs(hCSBC);
    if (FAILED(hr)) {
        printf("Failed pfnTruncateLogs call [%" PRIx32 "]\n", (uint32_t)hr);
    }
    EXPECT_HR(S_OK, hr);
    json = report(ca);
    printf("after:  %s\n", strstr(json, "\"log_generations\""));
    gens = strstr(json, "\"log_generations\":[");
    long long oldest_after = gens ? strtoll(gens + strlen("\"log_generations\":["), NULL, 10) : -1;
    certemu_free_string(json);
    /* Generations older than this backup's logs are gone. */
    EXPECT(oldest_after >= (long long)low || oldest_after == 0);
    EXPECT(report_num(ca, "high_gen") == (long long)high);
    EXPECT_OK(CertSrvBackupEnd(hCSBC));

    /* The backup holds everything a restore needs; with the disk lost, it restores. */
    CertSrvBackupFree(names);
    CertSrvBackupFree(logs);
    EXPECT_OK(certemu_ca_destroy(ca));
    rm_rf(dir);
    free(copy);
    free(first);
    free(buf);
    free(dir);
    return finish("sample_truncate_logs");
}
