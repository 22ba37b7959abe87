"""PDFs made by code for tests: known text on known pages, and the broken files users upload."""

from __future__ import annotations

import pymupdf

GOVERNING_LAW = (
    "This Agreement shall be governed by and construed in accordance with the laws of the State of New York, "
    "without regard to its conflict of laws principles."
)

CONTRACT_PAGES = [
    "MASTER SERVICES AGREEMENT\n\n"
    'This Master Services Agreement (the "Agreement") is entered into as of March 3, 2021 (the "Effective Date") '
    'by and between Acme Widgets, Inc., a Delaware corporation ("Acme"), and Globex Logistics LLC, a Texas limited '
    'liability company ("Globex").\n\n'
    "1. Services. Globex shall provide the logistics services described in Exhibit A.\n\n"
    "2. Term. This Agreement shall commence on the Effective Date and continue for a period of three (3) years, "
    "unless terminated earlier as provided herein.",
    "3. Termination for Convenience. Either party may terminate this Agreement for any reason upon ninety (90) "
    "days prior written notice to the other party.\n\n"
    f"4. Governing Law. {GOVERNING_LAW}\n\n"
    "5. Assignment. Neither party may assign this Agreement without the prior written consent of the other party.",
    "6. Limitation of Liability. In no event shall either party be liable for any indirect, incidental, special "
    "or consequential damages arising out of this Agreement.\n\n"
    "IN WITNESS WHEREOF, the parties have executed this Agreement as of the Effective Date.\n\n"
    "ACME WIDGETS, INC.        GLOBEX LOGISTICS LLC",
]


def text_pdf(pages: list[str]) -> bytes:
    """A PDF with one text box per page, wrapped to the page width."""
    document = pymupdf.open()
    for text in pages:
        page = document.new_page(width=612, height=792)
        page.insert_textbox(pymupdf.Rect(72, 72, 540, 720), text, fontsize=10, fontname="helv")
    data = document.tobytes()
    document.close()
    return bytes(data)


def contract_pdf() -> bytes:
    return text_pdf(CONTRACT_PAGES)


def encrypted_pdf(user_password: str = "secret") -> bytes:
    document = pymupdf.open(stream=contract_pdf(), filetype="pdf")
    data = document.tobytes(
        encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner-" + user_password, user_pw=user_password
    )
    document.close()
    return bytes(data)


def truncated_pdf() -> bytes:
    data = contract_pdf()
    return data[: len(data) // 2]


def image_only_pdf(dpi: int = 50) -> bytes:
    """What a scanner produces: pages that are pictures, with no text layer."""
    source = pymupdf.open(stream=contract_pdf(), filetype="pdf")
    pixmap = source[1].get_pixmap(dpi=dpi)
    document = pymupdf.open()
    page = document.new_page(width=612, height=792)
    page.insert_image(page.rect, pixmap=pixmap)
    data = document.tobytes()
    document.close()
    source.close()
    return bytes(data)
