"""One-off ERP-side fixture for a fresh Tryton database (run BEFORE the server).

Creates what sale.sale needs to go draft -> quotation -> processing and to
produce a shipment and a postable invoice: a company (USD), the minimal chart of
accounts (with default receivable/payable), a fiscal year with periods and
invoice sequences, a "Direct" payment term, four countries (US, DE, GB, FR;
the full list needs `trytond_import_countries` + pycountry) and an accounting
product category named "Goods" that products must reference.

Runs in-process through proteus' trytond backend (not over HTTP); it uses the
helper functions that ship inside the trytond module packages (tests/tools.py).
It also creates three products (SKU-1..3), a second company keeping its prices in EUR, and a
REST application key.
Usage: TRYTOND_CONFIG=trytond.conf python fixture.py DBNAME
"""
import os
import sys

from proteus import Model, config as pconfig
from trytond.modules.account.tests.tools import (
    create_chart, create_fiscalyear, get_accounts)
from trytond.modules.account_invoice.tests.tools import (
    create_payment_term, set_fiscalyear_invoice_sequences)
from trytond.modules.company.tests.tools import create_company
from trytond.modules.currency.tests.tools import get_currency


def main(dbname):
    pconfig.set_trytond(dbname, config_file=os.environ['TRYTOND_CONFIG'])
    Party = Model.get('party.party')
    company_party = Party(name='Probe Company', code='COMPANY')
    company_party.save()
    create_company(party=company_party, currency='USD')
    get_currency('EUR')  # the shipped mapping's default currency
    create_chart()
    fiscalyear = set_fiscalyear_invoice_sequences(create_fiscalyear())
    fiscalyear.click('create_period')
    create_payment_term().save()
    accounts = get_accounts()
    Country = Model.get('country.country')
    for code, name in [('US', 'United States'), ('DE', 'Germany'),
            ('GB', 'United Kingdom'), ('FR', 'France')]:
        Country(code=code, name=name).save()
    Category = Model.get('product.category')
    goods = Category(name='Goods', accounting=True,
        account_revenue=accounts['revenue'],
        account_expense=accounts['expense'])
    goods.save()
    # The products the CRM sells (codes as in the CRM's OpportunityLineItems).
    Uom = Model.get('product.uom')
    unit, = Uom.find([('name', '=', 'Unit')])
    Template = Model.get('product.template')
    from decimal import Decimal
    for code, name, price in [('SKU-1', 'Widget', '19.49'), ('SKU-2', 'Bolt pack', '4.50'),
            ('SKU-3', 'Controller', '1299.00')]:
        template = Template(name=name, type='goods', salable=True, default_uom=unit,
            sale_uom=unit, list_price=Decimal(price), account_category=goods)
        product = (template.products[0] if template.products
            else template.products.new())
        product.suffix_code = code
        template.save()
    # A second company keeping its prices in EUR (Tryton's list prices are per company, in
    # its currency): price sync reads each company's prices, so a product priced there has
    # EUR prices too. Made last: the account tools expect one company. The admin may work in
    # both; the USD company stays the current one, and "all companies" lets the records of
    # either (the EUR company's price lists) be read and made.
    Company = Model.get('company.company')
    europe_party = Party(name='Probe Europe', code='COMPANY-EU')
    europe_party.save()
    europe = Company(party=europe_party, currency=get_currency('EUR'))
    europe.save()
    User = Model.get('res.user')
    admin, = User.find([('login', '=', 'admin')])
    admin.companies.append(Company(europe.id))
    admin.company_filter = 'all'
    admin.save()
    # An application key for the REST API (the adapter may use either).
    Application = Model.get('res.user.application')
    Application(user=admin, application='rest',
        key=os.environ.get('TRYTON_APP_KEY', 'handoff-test-key')).save()
    print('fixture ok')


if __name__ == '__main__':
    main(sys.argv[1])
