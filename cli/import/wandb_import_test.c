/* wandb_import_test.c — the W&B transaction-file reader (wandb_txlog.h) on
 * files written here by a small writer of the format, intact and damaged, and
 * the conversion (wandb_convert.h) of a few records. The end-to-end test
 * (tests/e2e/test_import.py) uses a writer of its own, in Python. */
#include "check.h"
#include "import/wandb_convert.h"
#include "import/wandb_txlog.h"

#include "wandb_record.pb-c.h"

#include <stdlib.h>
#include <string.h>

/* ---- a writer: header, then records split into chunks at block ends ---------- */

struct file {
	uint8_t *p;
	size_t len, cap;
	size_t rec_off[64]; /* each record's first chunk */
	size_t n_rec;
};

static void put(struct file *f, const void *d, size_t n)
{
	if (f->len + n > f->cap) {
		f->cap = (f->len + n) * 2;
		f->p = realloc(f->p, f->cap);
	}
	memcpy(f->p + f->len, d, n);
	f->len += n;
}

static bool leveldb_crc; /* write LevelDB's masked CRC-32C instead */

static void chunk(struct file *f, uint8_t type, const uint8_t *d, size_t n)
{
	uint32_t crc = leveldb_crc ? wtx_crc_leveldb(type, d, n) : wtx_crc_ieee(type, d, n);
	uint8_t h[7] = {(uint8_t)crc,
	                (uint8_t)(crc >> 8),
	                (uint8_t)(crc >> 16),
	                (uint8_t)(crc >> 24),
	                (uint8_t)n,
	                (uint8_t)(n >> 8),
	                type};
	put(f, h, 7);
	put(f, d, n);
}

static void record(struct file *f, const uint8_t *d, size_t n)
{
	bool first = true;
	f->rec_off[f->n_rec++] = f->len;
	do {
		size_t left = WTX_BLOCK_BYTES - f->len % WTX_BLOCK_BYTES;
		if (left < 7) {
			static const uint8_t zero[7];
			put(f, zero, left);
			continue;
		}
		size_t take = n < left - 7 ? n : left - 7;
		uint8_t type = take == n ? (first ? 1 : 4) : (first ? 2 : 3);
		chunk(f, type, d, take);
		d += take;
		n -= take;
		first = false;
	} while (n > 0);
}

static void new_file(struct file *f)
{
	memset(f, 0, sizeof *f);
	static const uint8_t head[7] = {':', 'W', '&', 'B', 0xE1, 0xBE, 0};
	put(f, head, 7);
}

struct seen {
	size_t n;
	size_t len[64];
	uint8_t first[64];
	size_t damages;
	uint64_t damage_off[16];
};

static void on_damage(void *arg, const struct wtx_damage *d)
{
	struct seen *s = arg;
	if (s->damages < 16)
		s->damage_off[s->damages] = d->offset;
	s->damages++;
}

/* Reads the file's bytes [0, len) with the reader. */
static int read_all(const struct file *f, size_t len, struct seen *s)
{
	memset(s, 0, sizeof *s);
	FILE *fp = fmemopen(f->p, len, "rb");
	wtx_reader *r;
	char why[200];
	int rv = wtx_open(fp, 0, on_damage, s, &r, why, sizeof why);
	if (rv != 0)
		return rv;
	const uint8_t *d;
	size_t n;
	uint64_t off;
	while ((rv = wtx_next(r, &d, &n, &off)) == 1) {
		if (s->n < 64) {
			s->len[s->n] = n;
			s->first[s->n] = n ? d[0] : 0;
		}
		s->n++;
	}
	wtx_close(r);
	return rv;
}

static void fill(uint8_t *p, size_t n, uint8_t tag)
{
	memset(p, tag, n);
}

static void test_reader(void)
{
	struct file f;
	new_file(&f);
	static uint8_t big[100000];
	uint8_t small[100];
	fill(small, sizeof small, 'a');
	record(&f, small, sizeof small);
	fill(big, sizeof big, 'b');
	record(&f, big, sizeof big); /* FIRST, MIDDLE, MIDDLE, LAST over 4 blocks */
	fill(small, sizeof small, 'c');
	record(&f, small, sizeof small);
	record(&f, small, 0); /* an empty record is a record */

	struct seen s;
	CHECK_EQ(read_all(&f, f.len, &s), 0);
	CHECK_EQ(s.n, 4);
	CHECK_EQ(s.len[1], sizeof big);
	CHECK_EQ(s.first[1], 'b');
	CHECK_EQ(s.first[2], 'c');
	CHECK_EQ(s.damages, 0);

	/* Cut at every record boundary: the records before it, no damage. */
	for (size_t i = 0; i < f.n_rec; i++) {
		CHECK_EQ(read_all(&f, f.rec_off[i], &s), 0);
		CHECK_EQ(s.n, i, "cut at record %zu", i);
		CHECK_EQ(s.damages, 0, "cut at record %zu", i);
	}
	/* Cut inside the big record: the first record, and the tail reported. */
	CHECK_EQ(read_all(&f, f.rec_off[1] + 40000, &s), 0);
	CHECK_EQ(s.n, 1);
	CHECK_EQ(s.damages, 1);
	CHECK_EQ(s.damage_off[0], f.rec_off[1]);
	/* Cut inside a chunk header. */
	CHECK_EQ(read_all(&f, f.rec_off[2] + 3, &s), 0);
	CHECK_EQ(s.n, 2);
	CHECK_EQ(s.damages, 1);

	/* A bad checksum in the first record: block 0 is skipped, which holds
	 * record 0 and the start of record 1: records 2 and 3 survive. */
	struct file g = f;
	g.p = malloc(f.len);
	memcpy(g.p, f.p, f.len);
	g.p[f.rec_off[0] + 10] ^= 0xff;
	CHECK_EQ(read_all(&g, g.len, &s), 0);
	CHECK_EQ(s.n, 2);
	CHECK_EQ(s.first[0], 'c');
	CHECK_EQ(s.damages, 1);
	CHECK_EQ(s.damage_off[0], f.rec_off[0]);

	/* A zeroed block (block 1, inside the big record). */
	memcpy(g.p, f.p, f.len);
	memset(g.p + WTX_BLOCK_BYTES, 0, WTX_BLOCK_BYTES);
	CHECK_EQ(read_all(&g, g.len, &s), 0);
	CHECK_EQ(s.n, 3);
	CHECK_EQ(s.damages, 1);
	CHECK_EQ(s.damage_off[0], f.rec_off[1]);

	/* A wrong header refuses the file. */
	memcpy(g.p, f.p, f.len);
	g.p[4] = 0;
	CHECK_EQ(read_all(&g, g.len, &s), WTX_BAD_HEADER);
	memcpy(g.p, f.p, f.len);
	g.p[6] = 1;
	CHECK_EQ(read_all(&g, g.len, &s), WTX_BAD_HEADER);
	CHECK_EQ(read_all(&f, 5, &s), WTX_BAD_HEADER);
	free(g.p);
	free(f.p);
}

/* LevelDB's masked CRC-32C is accepted too; a chunk that continues a record
 * whose start is missing (no damage before it) is damage of its own. */
static void test_reader_variants(void)
{
	struct file f;
	new_file(&f);
	leveldb_crc = true;
	static uint8_t big[50000];
	fill(big, sizeof big, 'v');
	record(&f, big, sizeof big);
	leveldb_crc = false;
	struct seen s;
	CHECK_EQ(read_all(&f, f.len, &s), 0);
	CHECK_EQ(s.n, 1);
	CHECK_EQ(s.damages, 0);
	free(f.p);

	new_file(&f);
	uint8_t mid[10];
	fill(mid, sizeof mid, 'm');
	chunk(&f, 3, mid, sizeof mid); /* MIDDLE with no FIRST */
	record(&f, mid, sizeof mid);
	CHECK_EQ(read_all(&f, f.len, &s), 0);
	CHECK_EQ(s.n, 1);
	CHECK_EQ(s.damages, 1);
	CHECK_EQ(s.damage_off[0], 7);
	free(f.p);
}

/* ---- conversion ----------------------------------------------------------------- */

struct emitted {
	int n;
	Trackd__V1__Record *rec[16];
};

static int on_emit(void *arg, const Trackd__V1__Record *rec, uint64_t offset)
{
	(void)offset;
	struct emitted *e = arg;
	if (e->n < 16) {
		/* A copy through the wire, as the agent would see it. */
		size_t n = trackd__v1__record__get_packed_size(rec);
		uint8_t *b = malloc(n + 1);
		trackd__v1__record__pack(rec, b);
		e->rec[e->n++] = trackd__v1__record__unpack(NULL, n, b);
		free(b);
	}
	return 0;
}

static size_t pack_wandb(const Wbi__Record *r, uint8_t **out)
{
	size_t n = wbi__record__get_packed_size(r);
	*out = malloc(n + 1);
	wbi__record__pack(r, *out);
	return n;
}

static void test_convert(void)
{
	struct emitted e = {0};
	struct wbc_options o = {.file_id = "fileid", .pid = 42, .emit = on_emit, .arg = &e};
	wbc *c;
	CHECK_EQ(wbc_new(&o, &c), 0);

	Wbi__RunRecord run = WBI__RUN_RECORD__INIT;
	run.run_id = "abc123";
	run.project = "proj";
	run.display_name = "my-run";
	Wbi__Timestamp st = WBI__TIMESTAMP__INIT;
	st.seconds = 1700000000;
	run.start_time = &st;
	Wbi__Record rec = WBI__RECORD__INIT;
	rec.record_type_case = WBI__RECORD__RECORD_TYPE_RUN;
	rec.run = &run;
	uint8_t *b;
	size_t n = pack_wandb(&rec, &b);
	CHECK_EQ(wbc_record(c, b, n, 7), 0);
	free(b);

	Wbi__Item i1 = WBI__ITEM__INIT, i2 = WBI__ITEM__INIT, i3 = WBI__ITEM__INIT,
	          i4 = WBI__ITEM__INIT;
	i1.key = "_timestamp";
	i1.value_json = "1700000001.25";
	i2.key = "_runtime";
	i2.value_json = "1.25";
	char *nested[] = {"a", "b"};
	i3.nested_key = nested;
	i3.n_nested_key = 2;
	i3.value_json = "[1, 2.5, null]";
	i4.key = "loss";
	i4.value_json = "NaN";
	Wbi__Item *items[] = {&i1, &i2, &i3, &i4};
	Wbi__HistoryStep step = WBI__HISTORY_STEP__INIT;
	step.num = 3;
	Wbi__HistoryRecord h = WBI__HISTORY_RECORD__INIT;
	h.item = items;
	h.n_item = 4;
	h.step = &step;
	rec.record_type_case = WBI__RECORD__RECORD_TYPE_HISTORY;
	rec.history = &h;
	n = pack_wandb(&rec, &b);
	CHECK_EQ(wbc_record(c, b, n, 100), 0);
	free(b);
	CHECK_EQ(wbc_finish(c), 0);

	CHECK_EQ(e.n, 3); /* start, row, exit */
	Trackd__V1__Record *r = e.rec[0];
	CHECK(r && r->body_case == TRACKD__V1__RECORD__BODY_START);
	if (r && r->start) {
		CHECK_STR_EQ(r->run_id, "abc123");
		CHECK_STR_EQ(r->start->project, "proj");
		CHECK_STR_EQ(r->start->display_name, "my-run");
		CHECK(r->start->imported);
		CHECK_EQ(r->start->mode, TRACKD__V1__RUN_MODE__RUN_MODE_OFFLINE);
		CHECK_EQ(r->start->start_time_us, 1700000000000000LL);
	}
	r = e.rec[1];
	CHECK(r && r->body_case == TRACKD__V1__RECORD__BODY_HISTORY);
	if (r && r->history) {
		CHECK_EQ(r->history->step, 3);
		CHECK(r->history->has_timestamp && r->history->timestamp == 1700000001.25);
		CHECK(r->history->has_runtime && r->history->runtime == 1.25);
		CHECK_EQ(r->history->n_items, 2); /* a (nested) and loss */
		for (size_t i = 0; i < r->history->n_items; i++) {
			const Trackd__V1__Item *it = r->history->items[i];
			if (strcmp(it->key, "a") == 0) {
				CHECK_EQ(it->value->kind_case, TRACKD__V1__VALUE__KIND_MAP_VALUE);
				CHECK_STR_EQ(it->value->map_value->items[0]->key, "b");
				CHECK_EQ(
				    it->value->map_value->items[0]->value->list_value->n_values, 3);
			}
		}
	}
	r = e.rec[2];
	CHECK(r && r->body_case == TRACKD__V1__RECORD__BODY_EXIT);
	if (r && r->exit) {
		CHECK_EQ(r->exit->reason, TRACKD__V1__EXIT_REASON__EXIT_CRASHED);
		CHECK_EQ(r->exit->pid, 42);
		CHECK_EQ(r->exit->client_time_us, 1700000001250000LL);
	}
	CHECK(!wbc_stats(c)->have_exit);
	CHECK_EQ(wbc_stats(c)->rows, 1);
	for (int i = 0; i < e.n; i++)
		trackd__v1__record__free_unpacked(e.rec[i], NULL);
	wbc_free(c);
}

int main(void)
{
	test_reader();
	test_reader_variants();
	test_convert();
	return CHECK_SUMMARY("wandb_import_test");
}
