#!/usr/bin/env python3
"""Writes the EDA energy-data report fixtures (`eda-*.xlsx`) the audit's tests read.

The layout is the EDA portal's "Energiedatenreport" sheet `Energiedaten` as real reports of
2023 show it (docs/research/official-meter-data.md, section 2): row 1 the disclaimer, then the
label rows in column A, one column per metering point and register, each followed by its
`MM` quality column, the community `TOTAL` columns last, then one row per quarter hour whose
column A is the interval start in local time (Europe/Vienna) as text `dd.MM.yyyy HH:mm:ss`.
Metering point ids are made up. Run it from this directory; it needs only the standard
library (an .xlsx is a zip of XML parts).

- eda-2023-10-29.xlsx: the autumn change of clocks, 100 quarter hours (02:00-02:45 twice);
- eda-2023-03-26.xlsx: the spring change, 92 quarter hours (no 02:xx);
- eda-2023-10-29-short.xlsx: the autumn day with one quarter hour missing (95 rows).
"""

import zipfile
from xml.sax.saxutils import escape

CONSUMER = "AT0020000000000000000000000000001"
PRODUCER = "AT0020000000000000000000000000002"
DISCLAIMER = ("Die Informationen in den Reports werden auf Basis der Datensätze generiert, "
              "die im EDA-System verfügbar sind.")


def quarter_hours(day, month, year, kind):
    """Local wall-clock labels of one day, in order, as the report lists them."""
    out = []
    for h in range(24):
        if kind == "spring" and h == 2:
            continue
        reps = 2 if (kind == "autumn" and h == 2) else 1
        for _ in range(reps):
            for m in (0, 15, 30, 45):
                out.append(f"{day:02d}.{month:02d}.{year} {h:02d}:{m:02d}:00")
    return out


def value(i, col):
    """A deterministic kWh figure with up to 6 decimals (as the operator's allocation has)."""
    base = {0: 0.031 + (i % 7) * 0.004, 1: 0.000727 * (i % 5), 2: 0.000727 * (i % 5), 3: 0.064 * (i % 3), 4: 0.01 * (i % 4)}
    return round(base[col], 6)


def sheet_rows(labels):
    columns = [  # (metering point, direction, metercode label)
        (CONSUMER, "CONSUMPTION", "Gesamtverbrauch lt. Messung (bei Teilnahme gem. Erzeugung) [KWH]"),
        (CONSUMER, "CONSUMPTION", "Anteil gemeinschaftliche Erzeugung [KWH]"),
        (CONSUMER, "CONSUMPTION", "Eigendeckung gemeinschaftliche Erzeugung [KWH]"),
        (PRODUCER, "GENERATION", "Gesamte gemeinschaftliche Erzeugung [KWH]"),
        (PRODUCER, "GENERATION", "Gesamt/Überschusserzeugung, Gemeinschaftsüberschuss [KWH]"),
    ]
    header = [
        ["MeteringpointID"] + sum(([p, "MM"] for p, _, _ in columns), []) + ["TOTAL"],
        ["Name"] + sum((["Member", ""] for _ in columns), []) + [""],
        ["Energy direction"] + sum(([d, ""] for _, d, _ in columns), []) + ["CONSUMPTION"],
        ["Period start", labels[0]],
        ["Period end", labels[-1][:11] + "23:59:00"],
        ["MeteringReason", "SM Datenübermittlung"],
        ["Metering Interval", "QH (viertelstündlich)"],
        ["Number of Metering Intervals", ""],
        ["Metercode"] + sum(([c, ""] for _, _, c in columns), []) + ["Gesamtverbrauch lt. Messung (bei Teilnahme gem. Erzeugung) [KWH]"],
        ["Spaltensumme / minimale Qualität"] + sum((["", "L1"] for _ in columns), []) + [""],
    ]
    rows = [[DISCLAIMER]] + header
    for i, label in enumerate(labels):
        row = [label]
        for c in range(len(columns)):
            # One substitute value and one estimate, to check that qualities are kept.
            quality = "L2" if (i == 5 and c == 0) else ("L3" if (i == 6 and c == 0) else "L1")
            row += [value(i, c), quality]
        row.append(value(i, 0))
        rows.append(row)
    return rows


def col_name(n):
    s = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s


def write_xlsx(path, rows):
    strings, index = [], {}

    def sid(text):
        if text not in index:
            index[text] = len(strings)
            strings.append(text)
        return index[text]

    xml_rows = []
    for r, row in enumerate(rows, start=1):
        cells = []
        for c, v in enumerate(row):
            ref = f"{col_name(c)}{r}"
            if isinstance(v, float):
                cells.append(f'<c r="{ref}"><v>{repr(v)}</v></c>')
            elif v != "":
                cells.append(f'<c r="{ref}" t="s"><v>{sid(v)}</v></c>')
        xml_rows.append(f'<row r="{r}">{"".join(cells)}</row>')
    sheet = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
             '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
             f'<sheetData>{"".join(xml_rows)}</sheetData></worksheet>')
    shared = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
              f'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="{len(strings)}" uniqueCount="{len(strings)}">'
              + "".join(f"<si><t>{escape(s)}</t></si>" for s in strings) + "</sst>")
    workbook = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
                'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
                '<sheets><sheet name="Energiedaten" sheetId="1" r:id="rId1"/></sheets></workbook>')
    workbook_rels = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                     '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                     '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
                     '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
                     '</Relationships>')
    rels = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
            '</Relationships>')
    types = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
             '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
             '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
             '<Default Extension="xml" ContentType="application/xml"/>'
             '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
             '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
             '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
             '</Types>')
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in [("[Content_Types].xml", types), ("_rels/.rels", rels), ("xl/workbook.xml", workbook),
                           ("xl/_rels/workbook.xml.rels", workbook_rels), ("xl/worksheets/sheet1.xml", sheet),
                           ("xl/sharedStrings.xml", shared)]:
            info = zipfile.ZipInfo(name, date_time=(2023, 11, 1, 0, 0, 0))
            z.writestr(info, data)


autumn = quarter_hours(29, 10, 2023, "autumn")
spring = quarter_hours(26, 3, 2023, "spring")
write_xlsx("eda-2023-10-29.xlsx", sheet_rows(autumn))
write_xlsx("eda-2023-03-26.xlsx", sheet_rows(spring))
write_xlsx("eda-2023-10-29-short.xlsx", sheet_rows(autumn[:40] + autumn[41:]))
