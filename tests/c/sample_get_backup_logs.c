/*
 * CertSrvBackupGetBackupLogsW, as in its reference page's example:
 * hr = pfnGetBackupLogs(hCSBC, &pwszzLogFiles, &nListBytes); walk and print "%02x: %ws";
 * free (spec §5.8). Full and logs-only sessions: a logs-only session lists only the
 * generations written since the previous backup.
 */
#include "common.h"

static void print_and_check(const WCHAR *list, ULONG *low, ULONG *high)
{
    *low = 0;
    *high = 0;
    for (const WCHAR *p = list; *p != 0; p += wlen(p) + 1) {
        char *name = utf8_from_w(&p[1]);
        printf("%02x: %s\n", (unsigned)*p, name);
        EXPECT(*p == CSBFT_LOG);
        unsigned long g = 0;
        const char *base = win_basename(name);
        EXPECT(sscanf(base, "edb%5lx.log", &g) == 1 && g > 0);
        if (*low == 0 || g < *low) {
            *low = (ULONG)g;
        }
        if (g > *high) {
            *high = (ULONG)g;
        }
        free(name);
    }
}

int main(void)
{
    const WCHAR *wszServer;
    certemu_ca *ca = make_ca(8, 3, &wszServer);
    FNCERTSRVBACKUPGETBACKUPLOGSW *pfnGetBackupLogs = CertSrvBackupGetBackupLogsW;
    REQUIRE_OK(certemu_ca_issue(ca, 10));
    char *dir = scratch_dir("sample_get_backup_logs");
    char *full = path_join(dir, "full");
    REQUIRE_OK(backup_set(wszServer, full, 1, 0)); /* full, logs kept */
    long long full_high = report_num(ca, "high_gen");
    EXPECT(full_high >= 1);

    REQUIRE_OK(certemu_ca_issue(ca, 10)); /* ~3 more generations */
    HCSBC hCSBC = NULL;
    REQUIRE_OK(CertSrvBackupPrepareW(wszServer, 0, CSBACKUP_TYPE_LOGS_ONLY, &hCSBC));

    /* The documented pattern. */
    WCHAR *pwszzLogFiles = NULL;
    DWORD nListBytes = 0;
    HRESULT hr = pfnGetBackupLogs(hCSBC, &pwszzLogFiles, &nListBytes);
    EXPECT_HR(S_OK, hr);
    REQUIRE(pwszzLogFiles != NULL);
    printf("%lu bytes for log file names\n", (unsigned long)nListBytes);
    EXPECT(nListBytes == list_bytes(pwszzLogFiles));
    ULONG low, high;
    print_and_check(pwszzLogFiles, &low, &high);
    /* Only what the previous backup did not hold, and edb.log was rolled into it. */
    EXPECT(low == (ULONG)full_high + 1);
    EXPECT(high >= low + 2);
    EXPECT(list_count(pwszzLogFiles) == (int)(high - low + 1));
    EXPECT(report_num(ca, "current_generation") == (long long)high + 1);
    CertSrvBackupFree(pwszzLogFiles);
    EXPECT_OK(CertSrvBackupEnd(hCSBC));

    EXPECT_OK(certemu_ca_destroy(ca));
    rm_rf(dir);
    free(full);
    free(dir);
    return finish("sample_get_backup_logs");
}
