"""``{% planned_result_list cl %}``: Django's ``{% result_list cl %}`` with rows from deployments.admin_rows."""

from django import template
from django.contrib.admin.templatetags.base import InclusionAdminNode

from deployments.admin_rows import planned_result_list

register = template.Library()


@register.tag(name="planned_result_list")
def planned_result_list_tag(parser, token):
    return InclusionAdminNode(parser, token, func=planned_result_list, template_name="change_list_results.html",
                              takes_context=False)
