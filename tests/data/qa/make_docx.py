"""Writes bus-service.docx, the evaluation set's Word document, with python-docx.

    python tests/data/qa/make_docx.py      # rewrites tests/data/qa/bus-service.docx

The .docx is committed too; this script says what is in it and makes it again the same way."""
from pathlib import Path

import docx

HERE = Path(__file__).resolve().parent


def build(path: Path) -> None:
    doc = docx.Document()
    doc.add_heading("Campus shuttle bus", level=1)
    doc.add_paragraph("The campus shuttle links the main station with the north campus and the hospital. "
                      "It is run by Greenline Transport on behalf of the university.")
    doc.add_heading("Timetable", level=2)
    doc.add_paragraph("On weekdays the first bus leaves the main station at 6:30 and the last one at 22:10. "
                      "Buses run every 20 minutes, and every 10 minutes between 7:00 and 9:00. "
                      "On Saturdays the service runs every 40 minutes; there is no service on Sundays.")
    doc.add_paragraph("The trip from the main station to the north campus takes 18 minutes.")
    doc.add_heading("Tickets", level=2)
    table = doc.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Ticket", "Price"
    for ticket, price in [("Single trip", "2.40 EUR"), ("Day pass", "5.50 EUR"), ("Monthly pass", "48 EUR")]:
        cells = table.add_row().cells
        cells[0].text, cells[1].text = ticket, price
    doc.add_paragraph("Students with a valid student card travel free of charge. Tickets are sold by the driver "
                      "(cash only) and in the Greenline app.")
    doc.add_heading("Bicycles, prams and pets", level=2)
    doc.add_paragraph("Bicycles may be taken on board except between 7:00 and 9:00 on weekdays. Prams and "
                      "wheelchairs always have priority. Small dogs travel free; large dogs need a single-trip "
                      "ticket and must wear a muzzle.")
    doc.add_heading("Lost property", level=2)
    doc.add_paragraph("Items left on the bus are kept at the Greenline office at the main station for 30 days. "
                      "The office is open from 9:00 to 17:00 on weekdays.")
    doc.core_properties.title = "Campus shuttle bus"
    doc.save(path)


if __name__ == "__main__":
    build(HERE / "bus-service.docx")
