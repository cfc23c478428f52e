/*
 * CertSrvBackupPrepareW, as in its reference page's example:
 * hr = pfn(wszServer, 0, CSBACKUP_TYPE_FULL, &hCSBC); ... CertSrvBackupEnd (spec §5.2),
 * then the refusals of §5.2 / §6.2: bad flags, incremental before full, a second
 * session from the same client or another one, remote callers, missing privilege.
 */
#include "common.h"

#include <pthread.h>

static const WCHAR *g_server;
static HRESULT g_thread_hr;

static void *prepare_from_another_client(void *arg)
{
    HCSBC h = NULL;
    (void)arg;
    g_thread_hr = CertSrvBackupPrepareW(g_server, 0, CSBACKUP_TYPE_FULL, &h);
    if (h != NULL) {
        CertSrvBackupEnd(h);
    }
    return NULL;
}

int main(void)
{
    const WCHAR *wszServer;
    certemu_ca *ca = make_ca(4, 64, &wszServer);
    FNCERTSRVBACKUPPREPAREW *pfnBackupPrepare = CertSrvBackupPrepareW;
    FNCERTSRVBACKUPEND *pfnBackupEnd = CertSrvBackupEnd;
    HCSBC hCSBC = NULL;

    /* The documented pattern. */
    HRESULT hr = pfnBackupPrepare(wszServer, 0, CSBACKUP_TYPE_FULL, &hCSBC);
    if (FAILED(hr)) {
        printf("Failed pfnBackupPrepare call [%" PRIx32 "]\n", (uint32_t)hr);
    }
    EXPECT_HR(S_OK, hr);
    EXPECT(hCSBC != NULL);
    EXPECT_REPORT(ca, "backup_in_progress", "true");
    EXPECT(report_num(ca, "sessions_open") == 1);

    /* A second Prepare by the same client before End is out of sequence (rule 3)... */
    HCSBC h2 = (HCSBC)(uintptr_t)0x1234;
    EXPECT_HR(E_UNEXPECTED, CertSrvBackupPrepare(wszServer, 0, CSBACKUP_TYPE_FULL, &h2));
    EXPECT(h2 == NULL); /* *phbc is NULL on failure */
    /* ... and from another client a concurrent backup (rule 10). */
    pthread_t t;
    g_server = wszServer;
    REQUIRE(pthread_create(&t, NULL, prepare_from_another_client, NULL) == 0);
    REQUIRE(pthread_join(t, NULL) == 0);
    EXPECT_HR(CERTEMU_E_JET_BACKUP_IN_PROGRESS, g_thread_hr);

    EXPECT_OK(pfnBackupEnd(hCSBC));
    EXPECT_REPORT(ca, "backup_in_progress", "false");

    /* The session above read nothing: no full backup was recorded, so an incremental
     * backup is refused (rule 9). */
    EXPECT_HR(CERTEMU_E_JET_MISSING_FULL_BACKUP,
              CertSrvBackupPrepare(wszServer, 0, CSBACKUP_TYPE_LOGS_ONLY, &h2));
    EXPECT(h2 == NULL);

    /* Flags: grbitJet must be 0; dwBackupFlags FULL or LOGS_ONLY. */
    EXPECT_HR(E_INVALIDARG, CertSrvBackupPrepare(wszServer, 1, CSBACKUP_TYPE_FULL, &h2));
    EXPECT_HR(E_INVALIDARG, CertSrvBackupPrepare(wszServer, 0, 0, &h2));
    EXPECT_HR(E_INVALIDARG, CertSrvBackupPrepare(wszServer, 0, CSBACKUP_TYPE_MASK, &h2));
    EXPECT_HR(E_INVALIDARG, CertSrvBackupPrepare(wszServer, 0, 4 /* INCREMENTAL */, &h2));

    /* Remote callers are blocked by IF_DEFAULT (IF_NOREMOTEICERTADMINBACKUP). */
    REQUIRE_OK(certemu_ca_set_identity(ca, TRUE, TRUE, TRUE, TRUE));
    EXPECT_HR(E_ACCESSDENIED, CertSrvBackupPrepare(wszServer, 0, CSBACKUP_TYPE_FULL, &h2));
    REQUIRE_OK(certemu_ca_set_interface_flags(ca, IF_DEFAULT & ~IF_NOREMOTEICERTADMINBACKUP));
    EXPECT_OK(CertSrvBackupPrepare(wszServer, 0, CSBACKUP_TYPE_FULL, &h2));
    EXPECT_OK(CertSrvBackupEnd(h2));
    /* IF_NOLOCALICERTADMINBACKUP blocks local callers. */
    REQUIRE_OK(certemu_ca_set_identity(ca, TRUE, TRUE, TRUE, FALSE));
    REQUIRE_OK(certemu_ca_set_interface_flags(ca, IF_DEFAULT | IF_NOLOCALICERTADMINBACKUP));
    EXPECT_HR(E_ACCESSDENIED, CertSrvBackupPrepare(wszServer, 0, CSBACKUP_TYPE_FULL, &h2));
    REQUIRE_OK(certemu_ca_set_interface_flags(ca, IF_DEFAULT));
    EXPECT(report_num(ca, "interface_flags") == IF_DEFAULT);
    /* The backup privilege is required. */
    REQUIRE_OK(certemu_ca_set_identity(ca, FALSE, TRUE, TRUE, FALSE));
    EXPECT_HR(E_ACCESSDENIED, CertSrvBackupPrepare(wszServer, 0, CSBACKUP_TYPE_FULL, &h2));
    REQUIRE_OK(certemu_ca_set_identity(ca, TRUE, TRUE, TRUE, FALSE));

    /* A stopped CA cannot be backed up. */
    REQUIRE_OK(certemu_ca_stop(ca));
    EXPECT_HR(CERTEMU_E_RPC_SERVER_UNAVAILABLE,
              CertSrvBackupPrepare(wszServer, 0, CSBACKUP_TYPE_FULL, &h2));
    REQUIRE_OK(certemu_ca_start(ca));
    EXPECT_OK(CertSrvBackupPrepare(wszServer, 0, CSBACKUP_TYPE_FULL, &h2));
    EXPECT_OK(CertSrvBackupEnd(h2));

    EXPECT(report_num(ca, "sessions_open") == 0);
    EXPECT_OK(certemu_ca_destroy(ca));
    return finish("sample_backup_prepare");
}
