//! The disk image: a superblock, column chunks, and a catalog, every one
//! checksummed with CRC-32C. See docs/olap.md for the layout.
//!
//! * Sector 0, the superblock: `HOLAPv01`, format version, the catalog's
//!   sector, length and CRC, the sectors in use, and the CRC of all that.
//! * Column chunks from sector 1 on, each starting on a sector boundary:
//!   an encoded chunk ([`crate::encode`]), zero-padded to whole sectors.
//!   A chunk's sector, length and CRC live in the catalog.
//! * The catalog after the last chunk: per table its name, columns and
//!   types, rows, and per row group its rows and, per column, the chunk
//!   reference and the zone map (min and max).
//!
//! The loader writes chunks, then the catalog, flushes, and only then
//! writes the superblock and flushes again: an image whose load was cut
//! short has no valid superblock and is refused whole.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use alloc::{format, vec};

use hallows_blockdev::{crc32c::crc32c, BlockDevice, SECTOR};
use spin::Mutex;

use crate::encode::{decode_ints, decode_strs, encode_ints, encode_strs, put_bytes, put_varint, zigzag, Cur, Strs};
use crate::types::{parse_date, parse_decimal, Error, ErrorKind, Result, Type};

const MAGIC: &[u8; 8] = b"HOLAPv01";
const VERSION: u32 = 1;
/// Rows per row group unless the loader is told otherwise.
pub const DEFAULT_GROUP_ROWS: usize = 65_536;
/// The most rows a row group may hold (a decoder's bound).
pub const MAX_GROUP_ROWS: usize = 1 << 20;
/// The largest chunk a reader accepts.
pub const MAX_CHUNK_BYTES: usize = 256 << 20;
/// Bytes a chunk's read buffer holds past the chunk ([`Db::read_chunk`]).
pub const PAD: usize = 8;
/// The largest catalog a reader accepts.
pub const MAX_CATALOG_BYTES: usize = 64 << 20;
/// The longest string value the loader accepts.
pub const MAX_STR_BYTES: usize = 64 << 10;

/// A column of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnDef {
    pub name: String,
    pub ty: Type,
}

/// A table's name and columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    pub name: String,
    pub columns: Vec<ColumnDef>,
}

impl Schema {
    pub fn new(name: &str, cols: &[(&str, Type)]) -> Self {
        Schema {
            name: name.to_string(),
            columns: cols
                .iter()
                .map(|&(n, ty)| ColumnDef { name: n.to_string(), ty })
                .collect(),
        }
    }
}

/// A chunk's min and max.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Zone {
    Num { min: i64, max: i64 },
    Str { min: Arc<str>, max: Arc<str> },
}

/// Where a chunk is and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkMeta {
    pub lba: u64,
    pub len: u32,
    pub crc: u32,
    pub zone: Zone,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowGroup {
    pub rows: usize,
    /// One chunk per column, in schema order.
    pub chunks: Vec<ChunkMeta>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub schema: Schema,
    pub rows: u64,
    pub groups: Vec<RowGroup>,
}

/// A decoded column chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    Num(Vec<i64>),
    Str(Strs),
}

fn type_code(out: &mut Vec<u8>, t: Type) {
    match t {
        Type::Int32 => out.push(0),
        Type::Int64 => out.push(1),
        Type::Decimal(s) => out.extend_from_slice(&[2, s]),
        Type::Date => out.push(3),
        Type::Text => out.push(4),
        Type::Bool => out.push(5),
    }
}

fn read_type(c: &mut Cur<'_>) -> Result<Type> {
    Ok(match c.u8()? {
        0 => Type::Int32,
        1 => Type::Int64,
        2 => match c.u8()? {
            s if s <= crate::types::MAX_SCALE => Type::Decimal(s),
            s => return Err(Error::corrupt(format!("catalog: decimal scale {s}"))),
        },
        3 => Type::Date,
        4 => Type::Text,
        t => return Err(Error::corrupt(format!("catalog: column type {t}"))),
    })
}

fn encode_catalog(tables: &[Table]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, tables.len() as u64);
    for t in tables {
        put_bytes(&mut out, t.schema.name.as_bytes());
        put_varint(&mut out, t.schema.columns.len() as u64);
        for c in &t.schema.columns {
            put_bytes(&mut out, c.name.as_bytes());
            type_code(&mut out, c.ty);
        }
        put_varint(&mut out, t.rows);
        put_varint(&mut out, t.groups.len() as u64);
        for g in &t.groups {
            put_varint(&mut out, g.rows as u64);
            for ch in &g.chunks {
                put_varint(&mut out, ch.lba);
                put_varint(&mut out, u64::from(ch.len));
                out.extend_from_slice(&ch.crc.to_le_bytes());
                match &ch.zone {
                    Zone::Num { min, max } => {
                        put_varint(&mut out, zigzag(*min));
                        put_varint(&mut out, zigzag(*max));
                    }
                    Zone::Str { min, max } => {
                        put_bytes(&mut out, min.as_bytes());
                        put_bytes(&mut out, max.as_bytes());
                    }
                }
            }
        }
    }
    out
}

fn decode_catalog(b: &[u8], used: u64) -> Result<Vec<Table>> {
    let mut c = Cur::new(b, "catalog");
    let n = c.len(c.left())?;
    let mut tables: Vec<Table> = Vec::new();
    for _ in 0..n {
        let name = c.str(256)?.to_string();
        let ncols = c.len(c.left().min(4096))?;
        if ncols == 0 {
            return Err(Error::corrupt(format!("catalog: table {name} has no columns")));
        }
        let mut columns = Vec::with_capacity(ncols);
        for _ in 0..ncols {
            let cname = c.str(256)?.to_string();
            columns.push(ColumnDef { name: cname, ty: read_type(&mut c)? });
        }
        let rows = c.varint()?;
        let ngroups = c.len(c.left())?;
        let mut groups = Vec::with_capacity(ngroups.min(1 << 16));
        let mut total = 0u64;
        for _ in 0..ngroups {
            let grows = c.len(MAX_GROUP_ROWS)?;
            total += grows as u64;
            let mut chunks = Vec::with_capacity(ncols);
            for col in &columns {
                let lba = c.varint()?;
                let len = c.len(MAX_CHUNK_BYTES)? as u32;
                let crc = c.u32()?;
                let end = lba.checked_add(u64::from(len).div_ceil(SECTOR as u64));
                if lba == 0 || end.is_none_or(|e| e > used) {
                    return Err(Error::corrupt(format!("catalog: chunk of {name}.{} outside the image", col.name)));
                }
                let zone = if col.ty == Type::Text {
                    Zone::Str { min: Arc::from(c.str(MAX_STR_BYTES)?), max: Arc::from(c.str(MAX_STR_BYTES)?) }
                } else {
                    Zone::Num { min: c.ivarint()?, max: c.ivarint()? }
                };
                chunks.push(ChunkMeta { lba, len, crc, zone });
            }
            groups.push(RowGroup { rows: grows, chunks });
        }
        if total != rows {
            return Err(Error::corrupt(format!("catalog: table {name} has {rows} rows but its groups {total}")));
        }
        if tables.iter().any(|t| t.schema.name == name) {
            return Err(Error::corrupt(format!("catalog: table {name} twice")));
        }
        tables.push(Table { schema: Schema { name, columns }, rows, groups });
    }
    if !c.at_end() {
        return Err(Error::corrupt("catalog: trailing bytes"));
    }
    Ok(tables)
}

/// Reads `len` bytes from sector `lba` on.
fn read_bytes<D: BlockDevice>(dev: &mut D, lba: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len.div_ceil(SECTOR) * SECTOR];
    dev.read(lba, &mut buf)?;
    buf.truncate(len);
    Ok(buf)
}

/// An opened image: the catalog in memory, chunks read on demand.
#[derive(Debug)]
pub struct Db<D> {
    dev: Mutex<D>,
    pub tables: Vec<Table>,
    cache: Mutex<ChunkCache>,
}

/// Chunks whose CRC has been checked, kept as read (still encoded) up to
/// a byte budget, oldest out first. The image is never written while it
/// is open (the engine only reads), so a chunk checked once is the same
/// chunk on every later read; decoding still checks every count, width
/// and code each time. Off (budget 0) unless the opener sets a budget.
#[derive(Debug, Default)]
struct ChunkCache {
    budget: usize,
    used: usize,
    map: BTreeMap<u64, Arc<[u8]>>,
    order: VecDeque<u64>,
}

impl ChunkCache {
    fn insert(&mut self, lba: u64, bytes: Arc<[u8]>) {
        if bytes.len() > self.budget || self.map.contains_key(&lba) {
            return;
        }
        while self.used + bytes.len() > self.budget {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(b) = self.map.remove(&old) {
                self.used -= b.len();
            }
        }
        self.used += bytes.len();
        self.order.push_back(lba);
        self.map.insert(lba, bytes);
    }
}

impl<D: BlockDevice> Db<D> {
    /// Opens an image, checking the superblock and the catalog.
    pub fn open(mut dev: D) -> Result<Self> {
        if dev.sectors() < 2 {
            return Err(Error::corrupt("image too small to hold a superblock"));
        }
        let sb = read_bytes(&mut dev, 0, SECTOR)?;
        let mut c = Cur::new(&sb, "superblock");
        if c.take(8)? != MAGIC {
            return Err(Error::corrupt("no OLAP superblock (not an image from hallows-olap-load, or its load did not finish)"));
        }
        let version = c.u32()?;
        let cat_lba = c.u64()?;
        let cat_len = c.u64()?;
        let cat_crc = c.u32()?;
        let used = c.u64()?;
        let body = 8 + 4 + 8 + 8 + 4 + 8;
        let crc = c.u32()?;
        if crc != crc32c(&sb[..body]) {
            return Err(Error::corrupt("superblock checksum mismatch"));
        }
        if version != VERSION {
            return Err(Error::corrupt(format!("format version {version}, this engine reads {VERSION}")));
        }
        if used > dev.sectors() {
            return Err(Error::corrupt("superblock: image shorter than its contents (truncated file?)"));
        }
        if cat_len > MAX_CATALOG_BYTES as u64
            || cat_lba == 0
            || cat_lba.checked_add(cat_len.div_ceil(SECTOR as u64)).is_none_or(|e| e > used)
        {
            return Err(Error::corrupt("superblock: catalog outside the image"));
        }
        let cat = read_bytes(&mut dev, cat_lba, cat_len as usize)?;
        if crc32c(&cat) != cat_crc {
            return Err(Error::corrupt("catalog checksum mismatch"));
        }
        let tables = decode_catalog(&cat, cat_lba)?;
        Ok(Db { dev: Mutex::new(dev), tables, cache: Mutex::new(ChunkCache::default()) })
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.schema.name.eq_ignore_ascii_case(name))
    }

    /// Reads column `col` of row group `group` into `buf` and checks its
    /// CRC; returns the chunk's length. `buf` holds the chunk's bytes and
    /// then at least [`PAD`] more (zeroes, or the sector's padding), for
    /// [`Cur::padded`]; it is reused from call to call.
    pub fn read_chunk(&self, table: &Table, group: usize, col: usize, buf: &mut Vec<u8>) -> Result<usize> {
        let g = table
            .groups
            .get(group)
            .ok_or_else(|| Error::new(ErrorKind::Data, "row group out of range"))?;
        let meta = g
            .chunks
            .get(col)
            .ok_or_else(|| Error::new(ErrorKind::Data, "column out of range"))?;
        let len = meta.len as usize;
        let sectors = len.div_ceil(SECTOR) * SECTOR;
        // No clearing: every byte up to `sectors` is read, the rest zeroed.
        buf.resize(sectors + PAD, 0);
        self.dev.lock().read(meta.lba, &mut buf[..sectors])?;
        buf[len..].fill(0);
        if crc32c(&buf[..len]) != meta.crc {
            return Err(Error::corrupt(format!(
                "checksum mismatch in column {}.{} row group {group} (sector {}): the image is damaged",
                table.schema.name, table.schema.columns[col].name, meta.lba
            )));
        }
        Ok(len)
    }

    /// Keeps up to `bytes` of checked chunks in memory ([`Db::load_chunk`]);
    /// 0 turns the cache off and empties it.
    pub fn set_cache_bytes(&self, bytes: usize) {
        let mut c = self.cache.lock();
        c.budget = bytes;
        if bytes == 0 {
            *c = ChunkCache::default();
        }
    }

    /// Bytes the chunk cache holds now.
    pub fn cached_bytes(&self) -> usize {
        self.cache.lock().used
    }

    /// Column `col` of row group `group`, checked, as [`Db::read_chunk`]
    /// gives it (the chunk's bytes, then at least [`PAD`] more) and its
    /// length: shared with the chunk cache when it holds the chunk or
    /// takes it in (`Some`), else in `buf` (`None`).
    pub fn load_chunk(&self, table: &Table, group: usize, col: usize, buf: &mut Vec<u8>) -> Result<(Option<Arc<[u8]>>, usize)> {
        let meta = table
            .groups
            .get(group)
            .and_then(|g| g.chunks.get(col))
            .ok_or_else(|| Error::new(ErrorKind::Data, "chunk out of range"))?;
        let caching = {
            let c = self.cache.lock();
            if let Some(b) = c.map.get(&meta.lba) {
                return Ok((Some(b.clone()), meta.len as usize));
            }
            c.budget > 0
        };
        let len = self.read_chunk(table, group, col, buf)?;
        if !caching {
            return Ok((None, len));
        }
        let shared: Arc<[u8]> = Arc::from(&buf[..len + PAD]);
        self.cache.lock().insert(meta.lba, shared.clone());
        Ok((Some(shared), len))
    }

    /// Reads, checks and decodes column `col` of row group `group`.
    pub fn chunk(&self, table: &Table, group: usize, col: usize) -> Result<Chunk> {
        let mut buf = Vec::new();
        let len = self.read_chunk(table, group, col, &mut buf)?;
        let rows = table.groups[group].rows;
        let def = &table.schema.columns[col];
        let mut c = Cur::padded(&buf, len, "column chunk");
        let chunk = if def.ty == Type::Text {
            Chunk::Str(decode_strs(&mut c, rows)?)
        } else {
            Chunk::Num(decode_ints(&mut c, rows)?)
        };
        if !c.at_end() {
            return Err(Error::corrupt(format!("column chunk {}.{}: trailing bytes", table.schema.name, def.name)));
        }
        Ok(chunk)
    }

    /// The device back (tests).
    pub fn into_device(self) -> D {
        self.dev.into_inner()
    }
}

/// A number, decimal or date field as stored (scaled, days).
pub fn parse_field(f: &str, ty: Type) -> core::result::Result<i128, String> {
    let v = match ty {
        Type::Int32 => f.trim().parse::<i32>().ok().map(i128::from),
        Type::Int64 => f.trim().parse::<i64>().ok().map(i128::from),
        Type::Decimal(s) => parse_decimal(f, s).filter(|v| i64::try_from(*v).is_ok()),
        Type::Date => parse_date(f.trim()).map(i128::from),
        Type::Text | Type::Bool => None,
    };
    v.ok_or_else(|| match ty {
        Type::Decimal(s) => format!("not a decimal with at most {s} fraction digits: {f:?}"),
        Type::Date => format!("not a date (YYYY-MM-DD): {f:?}"),
        _ => format!("not an integer: {f:?}"),
    })
}

enum ColBuf {
    Num(Vec<i64>),
    Str(Vec<String>),
}

/// Writes an image: tables one after the other, row by row.
#[derive(Debug)]
pub struct Writer<D> {
    dev: D,
    next_lba: u64,
    tables: Vec<Table>,
    group_rows: usize,
}

/// A table being loaded into a [`Writer`].
pub struct TableWriter<'w, D> {
    w: &'w mut Writer<D>,
    table: Table,
    bufs: Vec<ColBuf>,
    rows: usize,
}

impl core::fmt::Debug for ColBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ColBuf")
    }
}

impl<D> core::fmt::Debug for TableWriter<'_, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "TableWriter({})", self.table.schema.name)
    }
}

impl<D: BlockDevice> Writer<D> {
    /// Starts an image on `dev` (its old contents are overwritten) with
    /// row groups of `group_rows` rows.
    pub fn new(dev: D, group_rows: usize) -> Result<Self> {
        if group_rows == 0 || group_rows > MAX_GROUP_ROWS {
            return Err(Error::new(ErrorKind::Input, format!("rows per group must be 1..={MAX_GROUP_ROWS}")));
        }
        let mut w = Writer { dev, next_lba: 1, tables: Vec::new(), group_rows };
        // An old superblock must not survive a load that is cut short.
        w.dev.write(0, &[0u8; SECTOR])?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(u64, u32, u32)> {
        let lba = self.next_lba;
        let mut buf = bytes.to_vec();
        buf.resize(bytes.len().div_ceil(SECTOR).max(1) * SECTOR, 0);
        let n = (buf.len() / SECTOR) as u64;
        if lba + n > self.dev.sectors() {
            return Err(Error::new(ErrorKind::Limit, "disk image full: give the loader a larger --size"));
        }
        self.dev.write(lba, &buf)?;
        self.next_lba += n;
        Ok((lba, bytes.len() as u32, crc32c(bytes)))
    }

    /// Starts a table.
    pub fn table(&mut self, schema: Schema) -> Result<TableWriter<'_, D>> {
        if self.tables.iter().any(|t| t.schema.name == schema.name) {
            return Err(Error::new(ErrorKind::Input, format!("table {} loaded twice", schema.name)));
        }
        let bufs = schema
            .columns
            .iter()
            .map(|c| if c.ty == Type::Text { ColBuf::Str(Vec::new()) } else { ColBuf::Num(Vec::new()) })
            .collect();
        Ok(TableWriter { w: self, table: Table { schema, rows: 0, groups: Vec::new() }, bufs, rows: 0 })
    }

    /// Writes the catalog and the superblock, flushing before and after
    /// the superblock; returns the device and the sectors in use.
    pub fn finish(mut self) -> Result<(D, u64)> {
        let cat = encode_catalog(&self.tables);
        let (cat_lba, cat_len, cat_crc) = self.put(&cat)?;
        self.dev.flush()?;
        let mut sb = Vec::with_capacity(SECTOR);
        sb.extend_from_slice(MAGIC);
        sb.extend_from_slice(&VERSION.to_le_bytes());
        sb.extend_from_slice(&cat_lba.to_le_bytes());
        sb.extend_from_slice(&u64::from(cat_len).to_le_bytes());
        sb.extend_from_slice(&cat_crc.to_le_bytes());
        sb.extend_from_slice(&self.next_lba.to_le_bytes());
        let crc = crc32c(&sb);
        sb.extend_from_slice(&crc.to_le_bytes());
        sb.resize(SECTOR, 0);
        self.dev.write(0, &sb)?;
        self.dev.flush()?;
        Ok((self.dev, self.next_lba))
    }
}

impl<D: BlockDevice> TableWriter<'_, D> {
    /// Appends a row given as text fields, one per column: integers,
    /// decimals (`-12.34`, no more fraction digits than the scale),
    /// dates (`YYYY-MM-DD`), text. `Err` names the column.
    pub fn push_text(&mut self, fields: &[&str]) -> Result<()> {
        let cols = &self.table.schema.columns;
        if fields.len() != cols.len() {
            return Err(Error::new(
                ErrorKind::Input,
                format!("{} fields where table {} has {} columns", fields.len(), self.table.schema.name, cols.len()),
            ));
        }
        // Parse the whole row before appending any of it.
        let mut nums = [0i64; 64];
        if cols.len() > nums.len() {
            return Err(Error::new(ErrorKind::Input, "more than 64 columns"));
        }
        for (i, (f, c)) in fields.iter().zip(cols).enumerate() {
            nums[i] = match c.ty {
                Type::Text if f.len() > MAX_STR_BYTES => {
                    return Err(Error::new(ErrorKind::Input, format!("column {}: longer than 64 KiB", c.name)))
                }
                Type::Text | Type::Bool => 0,
                ty => parse_field(f, ty).map_err(|e| Error::new(ErrorKind::Input, format!("column {}: {e}", c.name)))? as i64,
            };
        }
        for (i, (b, f)) in self.bufs.iter_mut().zip(fields).enumerate() {
            match b {
                ColBuf::Num(v) => v.push(nums[i]),
                ColBuf::Str(v) => v.push(f.to_string()),
            }
        }
        self.rows += 1;
        if self.rows == self.w.group_rows {
            self.flush_group()?;
        }
        Ok(())
    }

    fn flush_group(&mut self) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut chunks = Vec::with_capacity(self.bufs.len());
        for b in &mut self.bufs {
            let mut bytes = Vec::new();
            let zone = match b {
                ColBuf::Num(v) => {
                    encode_ints(&mut bytes, v);
                    let zone = Zone::Num {
                        min: v.iter().copied().min().unwrap_or(0),
                        max: v.iter().copied().max().unwrap_or(0),
                    };
                    v.clear();
                    zone
                }
                ColBuf::Str(v) => {
                    encode_strs(&mut bytes, v);
                    let min = v.iter().min().map_or("", |s| s.as_str());
                    let max = v.iter().max().map_or("", |s| s.as_str());
                    let zone = Zone::Str { min: Arc::from(min), max: Arc::from(max) };
                    v.clear();
                    zone
                }
            };
            let (lba, len, crc) = self.w.put(&bytes)?;
            chunks.push(ChunkMeta { lba, len, crc, zone });
        }
        self.table.groups.push(RowGroup { rows: self.rows, chunks });
        self.table.rows += self.rows as u64;
        self.rows = 0;
        Ok(())
    }

    /// Rows so far.
    pub fn rows(&self) -> u64 {
        self.table.rows + self.rows as u64
    }

    /// Writes the last row group and adds the table to the catalog.
    pub fn finish(mut self) -> Result<()> {
        self.flush_group()?;
        let table = core::mem::replace(
            &mut self.table,
            Table { schema: Schema { name: String::new(), columns: Vec::new() }, rows: 0, groups: Vec::new() },
        );
        self.w.tables.push(table);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hallows_blockdev::MemDisk;

    fn sample(group_rows: usize) -> (Vec<u8>, u64) {
        let mut w = Writer::new(MemDisk::new(4096), group_rows).unwrap();
        let mut t = w
            .table(Schema::new(
                "t",
                &[("k", Type::Int32), ("p", Type::Decimal(2)), ("d", Type::Date), ("s", Type::Text)],
            ))
            .unwrap();
        for i in 0..1000 {
            let (k, p, d) = (i.to_string(), format!("{}.{:02}", i / 3, i % 100), format!("1995-01-{:02}", 1 + i % 28));
            t.push_text(&[&k, &p, &d, ["A", "B", "C"][i % 3]]).unwrap();
        }
        assert!(t.push_text(&["x", "1", "1995-01-01", "A"]).is_err());
        assert!(t.push_text(&["1", "1.234", "1995-01-01", "A"]).is_err());
        assert!(t.push_text(&["1", "1.23", "1995-02-30", "A"]).is_err());
        assert!(t.push_text(&["1", "1.23"]).is_err());
        t.finish().unwrap();
        let (dev, used) = w.finish().unwrap();
        (dev.image().to_vec(), used)
    }

    #[test]
    fn round_trip() {
        let (img, _) = sample(300);
        let db = Db::open(MemDisk::from_image(img)).unwrap();
        let t = db.table("T").unwrap();
        assert_eq!(t.rows, 1000);
        assert_eq!(t.groups.len(), 4);
        assert_eq!(t.groups[3].rows, 100);
        let Chunk::Num(k) = db.chunk(t, 1, 0).unwrap() else { panic!() };
        assert_eq!(k, (300..600).collect::<Vec<i64>>());
        assert_eq!(t.groups[1].chunks[0].zone, Zone::Num { min: 300, max: 599 });
        let Chunk::Num(p) = db.chunk(t, 0, 1).unwrap() else { panic!() };
        assert_eq!(p[7], 2 * 100 + 7);
        let Chunk::Str(s) = db.chunk(t, 2, 3).unwrap() else { panic!() };
        assert_eq!(&**s.get(0), "A");
        assert_eq!(t.groups[2].chunks[3].zone, Zone::Str { min: "A".into(), max: "C".into() });
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let (img, used) = sample(300);
        let db = Db::open(MemDisk::from_image(img.clone())).unwrap();
        let t = db.table("t").unwrap().clone();
        let all = |db: &Db<MemDisk>| -> Result<Vec<Chunk>> {
            let mut v = Vec::new();
            for g in 0..t.groups.len() {
                for c in 0..t.schema.columns.len() {
                    v.push(db.chunk(&t, g, c)?);
                }
            }
            Ok(v)
        };
        let good = all(&db).unwrap();
        // Every byte of every used sector, flipped in turn: the image is
        // refused at open or the damaged chunk fails; never other data.
        let end = used as usize * SECTOR;
        for off in (0..end).step_by(7) {
            let mut bad = img.clone();
            bad[off] ^= 0x5a;
            match Db::open(MemDisk::from_image(bad)) {
                Err(e) => assert_eq!(e.kind, ErrorKind::Corrupt, "{e}"),
                Ok(db) => match all(&db) {
                    Err(e) => assert_eq!(e.kind, ErrorKind::Corrupt, "{e}"),
                    Ok(v) => {
                        assert_eq!(v, good, "byte {off} flipped, data changed");
                        // Only padding may be flipped unnoticed.
                        assert!(db.tables == vec![t.clone()]);
                    }
                },
            }
        }
    }

    #[test]
    fn unfinished_load_is_refused() {
        let mut w = Writer::new(MemDisk::from_image(sample(300).0), 300).unwrap();
        let mut t = w.table(Schema::new("u", &[("k", Type::Int64)])).unwrap();
        t.push_text(&["1"]).unwrap();
        t.finish().unwrap();
        let dev = w.dev;
        let e = Db::open(dev).unwrap_err();
        assert!(e.msg.contains("no OLAP superblock"), "{e}");
    }

    proptest::proptest! {
        /// A catalog of any bytes (its CRC would be right in a crafted
        /// image) is an error or a catalog, never a panic.
        #[test]
        fn any_catalog_bytes(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = decode_catalog(&b, 1 << 20);
        }

        /// A real catalog with one byte changed: the same.
        #[test]
        fn mutated_catalog(at in 0usize..10_000, x in 1u8..=255) {
            let (img, _) = sample(300);
            let db = Db::open(MemDisk::from_image(img)).unwrap();
            let mut cat = encode_catalog(&db.tables);
            let i = at % cat.len();
            cat[i] ^= x;
            let _ = decode_catalog(&cat, 1 << 20);
        }
    }

    #[test]
    fn garbage_images_do_not_panic() {
        let mut rng = hallows_blockdev::Rng::new(7);
        for _ in 0..200 {
            let mut img = vec![0u8; 8 * SECTOR];
            for b in img.iter_mut() {
                *b = rng.next_u64() as u8;
            }
            assert!(Db::open(MemDisk::from_image(img)).is_err());
        }
    }
}
