"""report-sim's CONNECT API driven by CloudBlue's own Python client for Connect
(`connect-openapi-client`, pinned in requirements.txt): what the client does against the real
platform must work against the simulator too.

Run by sim/tests/sim_connect_client.rs, which starts the simulator and passes its CONNECT base
URL and API key as REPORT_SIM_CONNECT_URL and REPORT_SIM_CONNECT_API_KEY.
"""

import asyncio
import io
import json
import os
import time
import uuid
import zipfile

import pytest
from connect.client import AsyncConnectClient, ClientError, ConnectClient, R

TEMPLATE = 'RT-0000-0001'
WINDOW = {'after': '2026-10-01T00:00:00Z', 'before': '2026-10-02T23:59:59Z'}


def _env(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f'{name} is not set: run these tests through sim/tests/sim_connect_client.rs')
    return value


@pytest.fixture(scope='session')
def endpoint():
    return _env('REPORT_SIM_CONNECT_URL')


@pytest.fixture(scope='session')
def api_key():
    return _env('REPORT_SIM_CONNECT_API_KEY')


def connect_client(endpoint, api_key, cls=ConnectClient):
    # No retries: a 5xx from the simulator is a finding, not something to ride out.
    return cls(api_key, endpoint=endpoint, max_retries=0, timeout=(5.0, 10.0))


@pytest.fixture
def reports(endpoint, api_key):
    """The `reporting/reports` collection, as a Connect user reaches it."""
    return connect_client(endpoint, api_key).ns('reporting').reports


@pytest.fixture
def batch():
    """A name prefix no other test uses, so that each test counts only its own reports."""
    return f'pyclient-{uuid.uuid4().hex[:12]}'


def create(reports, name, renderer='csv', template=TEMPLATE):
    return reports.create(
        payload={
            'template': {'id': template},
            'renderer': renderer,
            'parameters': {'date': WINDOW},
            'name': name,
        },
    )


def wait_for_status(reports, report_id, status, deadline=10.0):
    """Polls the report until it has `status`, failing after `deadline` seconds."""
    end = time.monotonic() + deadline
    seen = []
    while True:
        report = reports[report_id].get()
        seen.append(report['status'])
        if report['status'] == status:
            return report
        if time.monotonic() > end:
            pytest.fail(f'{report_id} not {status} after {deadline}s; statuses seen: {seen}')
        time.sleep(0.05)


def ids(resources):
    return [r['id'] for r in resources]


def test_a_report_is_created_from_a_template_and_read_back(reports, batch):
    created = create(reports, f'{batch} usage', renderer='xlsx')
    assert created['id'].startswith('RP-')
    assert created['template'] == {'id': TEMPLATE}
    assert created['renderer'] == 'xlsx'
    assert created['parameters'] == {'date': WINDOW}
    assert created['status'] == 'pending'

    read = reports[created['id']].get()
    assert read['id'] == created['id']
    assert read['name'] == f'{batch} usage'
    assert reports[created['id']].exists()
    assert not reports['RP-9999-9999-9999'].exists()


def test_rql_eq_and_in_filters_select_reports(reports, batch):
    csv = create(reports, f'{batch} a', renderer='csv')
    json_ = create(reports, f'{batch} b', renderer='json')
    xlsx = create(reports, f'{batch} c', renderer='xlsx', template='RT-0000-0002')
    mine = R().name.like(f'{batch}*')

    assert ids(reports.filter(R().name.eq(f'{batch} b'))) == [json_['id']]
    assert ids(reports.filter(name=f'{batch} a')) == [csv['id']]
    assert ids(reports.filter(mine, template__id='RT-0000-0002')) == [xlsx['id']]
    assert sorted(ids(reports.filter(mine, renderer__in=('csv', 'xlsx')))) == sorted(
        [csv['id'], xlsx['id']],
    )
    assert ids(reports.filter(mine & R().renderer.in_(['json']))) == [json_['id']]
    assert ids(reports.filter(mine & ~R().renderer.in_(['csv', 'xlsx']))) == [json_['id']]
    assert reports.filter(mine, R().id.in_([csv['id'], xlsx['id']])).count() == 2
    assert reports.filter(mine).first()['id'] == xlsx['id'], 'newest first'


def test_count_reads_the_total_without_fetching_reports(reports, batch):
    for i in range(3):
        create(reports, f'{batch} {i}')
    # count() asks for limit=0 and reads the total from Content-Range.
    assert reports.filter(R().name.like(f'{batch}*')).count() == 3
    assert reports.filter(name=f'{batch} 1').count() == 1
    assert reports.filter(name=f'{batch} none').count() == 0
    assert reports.all().count() >= 3


def test_pages_are_followed_with_limit_and_offset(reports, batch):
    made = [create(reports, f'{batch} {i}')['id'] for i in range(5)]
    newest_first = list(reversed(made))
    mine = reports.filter(R().name.like(f'{batch}*'))

    # Three pages of at most two.
    paged = mine.limit(2)
    assert ids(paged) == newest_first
    assert paged.content_range.count == 5
    assert paged.content_range.last == 4

    assert ids(mine.limit(2)[1:4]) == newest_first[1:4]
    assert mine.limit(2)[3]['id'] == newest_first[3]
    assert ids(mine.limit(2)[4:9]) == newest_first[4:], 'a slice past the end'
    assert list(reports.filter(name=f'{batch} none').limit(2)) == [], 'an empty listing'


def test_order_by_sorts_the_listing(reports, batch):
    c = create(reports, f'{batch} c', renderer='csv')['id']
    a = create(reports, f'{batch} a', renderer='json')['id']
    b = create(reports, f'{batch} b', renderer='csv')['id']
    mine = reports.filter(R().name.like(f'{batch}*'))

    assert ids(mine) == [b, a, c], 'newest first unless ordered'
    assert ids(mine.order_by('name').limit(2)) == [a, b, c]
    assert ids(mine.order_by('-name')) == [c, b, a]
    assert ids(mine.order_by('renderer', '-name')) == [c, b, a]
    assert ids(mine.order_by('-renderer', 'name')) == [a, b, c]


def test_the_download_action_gives_the_reports_zip(reports, batch):
    report = create(reports, f'{batch} download', renderer='csv')
    with pytest.raises(ClientError) as early:
        reports[report['id']].action('download').get()
    assert early.value.status_code == 400, 'not ready yet'

    done = wait_for_status(reports, report['id'], 'succeeded')
    assert done['progress'] == {'value': 100, 'max': 100}

    body = reports[report['id']].action('download').get()
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.namelist() == ['report.csv', 'summary.json']
    assert f'{batch} download' in archive.read('report.csv').decode()
    summary = json.loads(archive.read('summary.json'))
    assert summary['template'] == {'id': TEMPLATE}
    assert summary['parameters'] == {'date': WINDOW}


def test_a_bad_request_is_a_client_error_with_connects_code(reports, batch):
    with pytest.raises(ClientError) as e:
        reports.create(
            payload={'template': {'id': TEMPLATE}, 'renderer': 'xml', 'name': f'{batch} bad'},
        )
    assert e.value.status_code == 400
    assert e.value.error_code == 'VAL_001'
    assert e.value.errors and all(isinstance(m, str) for m in e.value.errors)
    assert str(e.value).startswith('400 Bad Request: VAL_001 - ')
    assert reports.filter(name=f'{batch} bad').count() == 0, 'nothing was created'


def test_a_wrong_api_key_is_a_client_error_401(endpoint):
    wrong = connect_client(endpoint, 'ApiKey SU-000-000-000:wrong').ns('reporting').reports
    with pytest.raises(ClientError) as e:
        wrong.all().count()
    assert e.value.status_code == 401
    assert e.value.error_code == 'AUTH_001'
    assert e.value.errors and all(isinstance(m, str) for m in e.value.errors)


def test_an_unknown_report_is_a_client_error_404(reports):
    with pytest.raises(ClientError) as e:
        reports['RP-9999-9999-9999'].get()
    assert e.value.status_code == 404
    assert e.value.error_code == 'NTF_001'
    assert e.value.errors == ['Report RP-9999-9999-9999 not found.']
    with pytest.raises(ClientError) as e:
        reports['RP-9999-9999-9999'].action('download').get()
    assert e.value.status_code == 404


def test_the_async_client_counts_and_pages_too(endpoint, api_key, batch):
    sync = connect_client(endpoint, api_key).ns('reporting').reports
    made = [create(sync, f'{batch} {i}')['id'] for i in range(3)]

    async def run():
        reports = connect_client(endpoint, api_key, AsyncConnectClient).ns('reporting').reports
        mine = reports.filter(R().name.like(f'{batch}*'))
        count = await mine.count()
        listed = [r['id'] async for r in mine.limit(2)]
        none = [r async for r in reports.filter(name=f'{batch} none')]
        return count, listed, none

    count, listed, none = asyncio.run(run())
    assert count == 3
    assert listed == list(reversed(made))
    assert none == []
